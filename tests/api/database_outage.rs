//! When PostgreSQL goes away, an instance says it is not ready, refuses what needs the
//! database with 503 + `Retry-After` (login, register and refresh included: no session is
//! started unchecked), and recovers by itself when the server is back.
//!
//! On a PostgreSQL server of the test's own (`tests/support/private_postgres.rs`), stopped
//! and started again, with Redis as a cluster runs (`tests/support/test_redis.rs`).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{
        STRONG_PASSWORD, TestApp, TestDatabase, assert_problem, header_u64, spawn_app_on,
        unique_username,
    },
    private_postgres::PostgresServer,
    test_redis::test_redis_url,
};

/// A request is refused in about half a second, not left hanging for the pool's 10 s; the
/// bound leaves room for a loaded machine.
const REFUSED_WITHIN: Duration = Duration::from_secs(4);

/// Words of the causes that must stay in the log, never in a response.
const INTERNALS: [&str; 6] = ["sqlx", "postgres", "refused", "pool", "127.0.0.1", "57P"];

async fn wait_until_ready(app: &TestApp, bound: Duration) {
    let start = Instant::now();
    while app.get("/health/ready", None).await.status() != StatusCode::OK {
        assert!(
            start.elapsed() < bound,
            "not ready {bound:?} after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answered promptly with a 503 `/problems/unavailable` with `Retry-After`, which names
/// nothing of the cause.
async fn assert_refused_promptly(what: &str, request: impl Future<Output = Response>) {
    let start = Instant::now();
    let response = request.await;
    assert!(
        start.elapsed() < REFUSED_WITHIN,
        "{what}: {:?}",
        start.elapsed()
    );
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert!(header_u64(&response, "retry-after") >= 1, "{what}");
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "/problems/unavailable", "{what}");
    let text = body.to_string().to_lowercase();
    for word in INTERNALS {
        assert!(!text.contains(&word.to_lowercase()), "{what}: {text}");
    }
}

#[tokio::test]
async fn without_postgresql_the_instance_is_not_ready_refuses_with_503_and_then_recovers() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let Some(mut postgres) = PostgresServer::start() else {
        return;
    };
    let prefix = format!("filmvault-test-{}", uuid::Uuid::new_v4().simple());
    let database = TestDatabase::on_private_server(postgres.url());
    let app = spawn_app_on(
        &database,
        &[
            ("REDIS_URL", redis_url.as_str()),
            ("REDIS_KEY_PREFIX", &prefix),
        ],
    )
    .await;
    let user = app.new_user().await;
    let (_, refresh) = app.token_pair(&user.username, &user.password).await;
    let film = app
        .create_film(&user.token, "Spirited Away", "Ghibli")
        .await;
    let film_path = format!("/api/v1/films/{}", film["id"]);
    assert_eq!(
        app.get("/health/ready", None).await.status(),
        StatusCode::OK
    );

    postgres.stop();
    assert_problem(
        app.get("/health/ready", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK);
    let newcomer = unique_username("newcomer");
    assert_refused_promptly("login", app.login(&user.username, &user.password)).await;
    assert_refused_promptly("register", app.register(&newcomer, STRONG_PASSWORD)).await;
    assert_refused_promptly("refresh", app.refresh(&refresh)).await;
    assert_refused_promptly("film read", app.get(&film_path, Some(&user.token))).await;
    refuse_concurrent_writes_promptly(&app, &user.token, &film_path).await;

    postgres.restart();
    wait_until_ready(&app, Duration::from_secs(15)).await;
    // The refused refresh spent nothing, the refused registration created nothing, and the
    // data written before the outage is all there.
    assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
    assert_eq!(
        app.register(&newcomer, STRONG_PASSWORD).await.status(),
        StatusCode::ACCEPTED
    );
    app.token_pair(&user.username, &user.password).await;
    let response = app.get(&film_path, Some(&user.token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = response.json().await.expect("a film");
    assert_eq!(read["name"], "Spirited Away");
    assert_eq!(
        read["likes"], 0,
        "no vote refused in the outage was recorded"
    );
    let vote = json!({ "vote": "like" });
    let voted = app
        .put_json(&format!("{film_path}/vote"), &vote, Some(&user.token))
        .await;
    assert_eq!(voted.status(), StatusCode::OK, "votes are written again");
    app.create_film(&user.token, "After the outage", "Ghibli")
        .await;
}

/// Votes and new films are written in batches (`domain::group_commit`); while the database
/// is away, every one of a batch is refused at once, not one after another.
async fn refuse_concurrent_writes_promptly(app: &TestApp, token: &str, film_path: &str) {
    let vote_path = format!("{film_path}/vote");
    let vote = json!({ "vote": "like" });
    let votes = (0..16).map(|_| app.put_json(&vote_path, &vote, Some(token)));
    let creations = (0..16).map(|n| {
        let film = json!({ "name": format!("Lost {n}"), "studio": "Nowhere" });
        async move { app.post_json("/api/v1/films", &film, Some(token)).await }
    });
    let start = Instant::now();
    let (votes, creations) = futures_util::join!(join_all(votes), join_all(creations));
    assert!(
        start.elapsed() < REFUSED_WITHIN,
        "32 writes refused in {:?}",
        start.elapsed()
    );
    for response in votes.into_iter().chain(creations) {
        let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["type"], "/problems/unavailable");
    }
}
