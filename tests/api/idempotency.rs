//! `Idempotency-Key` on `POST /api/v1/films` and the seed's `POST /add_film` (issue 18, item
//! 2): a retry gets the first answer and creates nothing, another body under the same key is
//! 422, a duplicate in flight is 409, keys are per caller, kept 24 h in the database.

use filmvault::db;
use futures_util::future::join_all;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_problem, spawn_app, spawn_app_on, spawn_app_with};

async fn post_with_key(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> Response {
    app.request(Method::POST, path)
        .bearer(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

/// How many films are called `name` (searching is by substring; the names are unique enough).
async fn films_named(app: &TestApp, name: &str) -> usize {
    let page: Value = app
        .get(&format!("/api/v1/films?q={name}"), None)
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|film| film["name"] == name)
        .count()
}

fn replayed(response: &Response) -> bool {
    response
        .headers()
        .get("idempotency-replayed")
        .is_some_and(|value| value == "true")
}

async fn the_key_row_of(app: &TestApp, user: &TestUser, key: &str) -> i64 {
    db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2",
        user.id,
        key
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_creates_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = json!({ "name": "Replayed Film", "studio": "Retry Studio", "year": 2001 });
    let first = post_with_key(&app, "/api/v1/films", &user.token, "\"key-1\"", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(!replayed(&first));
    let location = first.headers()["location"].clone();
    let created: Value = first.json().await.unwrap();

    // The same request, spelt differently (bare key, other field order and spacing).
    let retry = app
        .request(Method::POST, "/api/v1/films")
        .bearer(&user.token)
        .header("idempotency-key", "key-1")
        .header("content-type", "application/json")
        .body(r#"{ "year": 2001, "studio": "Retry Studio",  "name": " Replayed Film" }"#)
        .send()
        .await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(replayed(&retry));
    assert_eq!(retry.headers()["location"], location);
    assert_eq!(retry.headers()["content-type"], "application/json");
    assert!(retry.headers().contains_key("x-request-id"));
    assert_eq!(retry.json::<Value>().await.unwrap(), created);
    assert_eq!(films_named(&app, "Replayed Film").await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_creates_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let first = json!({ "name": "Keyed Original", "studio": "S" });
    let other = json!({ "name": "Keyed Impostor", "studio": "S" });
    let response = post_with_key(&app, "/api/v1/films", &user.token, "k-422", &first).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = post_with_key(&app, "/api/v1/films", &user.token, "k-422", &other).await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");
    assert_eq!(films_named(&app, "Keyed Impostor").await, 0);
    // The seed route is another request too.
    let response = post_with_key(&app, "/add_film", &user.token, "k-422", &first).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(films_named(&app, "Keyed Original").await, 1);
}

#[tokio::test]
async fn keys_are_per_caller() {
    let app = spawn_app().await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let body = json!({ "name": "Shared Key Film", "studio": "S" });
    let from_alice = post_with_key(&app, "/api/v1/films", &alice.token, "same", &body).await;
    let from_bob = post_with_key(&app, "/api/v1/films", &bob.token, "same", &body).await;
    assert_eq!(from_alice.status(), StatusCode::CREATED);
    assert_eq!(from_bob.status(), StatusCode::CREATED);
    assert!(!replayed(&from_bob), "Bob must not get Alice's answer");
    let bobs: Value = from_bob.json().await.unwrap();
    assert_eq!(bobs["owner"], bob.username.as_str());
    assert_eq!(films_named(&app, "Shared Key Film").await, 2);

    // Bob's API key is Bob: his key space, whichever credential he shows.
    let api_key = app.api_key_secret(&bob.token, &["read", "write"]).await;
    let again = app
        .request(Method::POST, "/api/v1/films")
        .api_key(&api_key)
        .header("idempotency-key", "same")
        .json(&body)
        .send()
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(replayed(&again));
    assert_eq!(again.json::<Value>().await.unwrap()["id"], bobs["id"]);
}

/// Racing duplicates on two instances of one database: whichever answers first, exactly one
/// film, and every other answer is the replay of its creation or a 409.
#[tokio::test]
async fn concurrent_duplicates_create_one_film() {
    let app = spawn_app().await;
    let other_instance = spawn_app_on(&app.database, &[]).await;
    let user = app.new_user().await;
    let body = json!({ "name": "Raced Film", "studio": "S" });
    let responses = join_all((0..8).map(|i| {
        let instance = if i % 2 == 0 { &app } else { &other_instance };
        post_with_key(instance, "/api/v1/films", &user.token, "race", &body)
    }))
    .await;
    let mut created_ids = Vec::new();
    let mut fresh = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => {
                fresh += usize::from(!replayed(&response));
                created_ids.push(response.json::<Value>().await.unwrap()["id"].clone());
            }
            StatusCode::CONFLICT => {
                let problem = assert_problem(response, StatusCode::CONFLICT).await;
                assert_eq!(problem["type"], "/problems/idempotency-key-in-flight");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one request created the film");
    assert!(created_ids.iter().all(|id| *id == created_ids[0]));
    assert_eq!(films_named(&app, "Raced Film").await, 1);
}

/// A key whose first request has not answered is 409; if that request never answers (its
/// instance died), the claim goes stale after a minute and a retry may proceed.
#[tokio::test]
async fn an_unanswered_claim_is_409_until_it_goes_stale() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = json!({ "name": "Claimed Film", "studio": "S" });
    let response = post_with_key(&app, "/api/v1/films", &user.token, "claimed", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Back to "in flight": the claim as a request that is still running left it.
    db::execute!(
        &mut app.db().await,
        "UPDATE idempotency_keys SET status = NULL, headers = NULL, body = NULL
         WHERE user_id = $1",
        user.id
    )
    .await
    .unwrap();
    let response = post_with_key(&app, "/api/v1/films", &user.token, "claimed", &body).await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "/problems/idempotency-key-in-flight");

    db::execute!(
        &mut app.db().await,
        "UPDATE idempotency_keys SET claimed_at = claimed_at - 120 WHERE user_id = $1",
        user.id
    )
    .await
    .unwrap();
    let response = post_with_key(&app, "/api/v1/films", &user.token, "claimed", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!replayed(&response), "the stale claim was taken over");
}

#[tokio::test]
async fn an_expired_key_is_free_again_and_purged() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let first = json!({ "name": "Yesterday's Film", "studio": "S" });
    let today = json!({ "name": "Today's Film", "studio": "S" });
    let response = post_with_key(&app, "/api/v1/films", &user.token, "daily", &first).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    db::execute!(
        &mut app.db().await,
        "UPDATE idempotency_keys SET expires_at = expires_at - 86401 WHERE user_id = $1",
        user.id
    )
    .await
    .unwrap();
    let response = post_with_key(&app, "/api/v1/films", &user.token, "daily", &today).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!replayed(&response));
    assert_eq!(the_key_row_of(&app, &user, "daily").await, 1);
}

#[tokio::test]
async fn a_malformed_key_is_400_and_creates_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = json!({ "name": "Badly Keyed", "studio": "S" });
    let too_long = "k".repeat(256);
    for key in [
        "",
        "\"\"",
        "two words",
        "tab\there",
        "back\\slash",
        "\"open",
        &too_long,
    ] {
        let response = post_with_key(&app, "/api/v1/films", &user.token, key, &body).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key", "{key:?}");
    }
    let twice = app
        .request(Method::POST, "/api/v1/films")
        .bearer(&user.token)
        .header("idempotency-key", "one")
        .header("idempotency-key", "two")
        .json(&body)
        .send()
        .await;
    assert_problem(twice, StatusCode::BAD_REQUEST).await;
    assert_eq!(films_named(&app, "Badly Keyed").await, 0);
}

/// Refusals are not remembered (the draft leaves it to the server): an invalid request does
/// not use up its key, and the corrected one runs.
#[tokio::test]
async fn an_invalid_request_does_not_use_up_its_key() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let invalid = json!({ "name": "", "studio": "S" });
    let response = post_with_key(&app, "/api/v1/films", &user.token, "fixme", &invalid).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(the_key_row_of(&app, &user, "fixme").await, 0);
    let corrected = json!({ "name": "Corrected Film", "studio": "S" });
    let response = post_with_key(&app, "/api/v1/films", &user.token, "fixme", &corrected).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!replayed(&response));
}

#[tokio::test]
async fn without_a_key_each_post_creates_a_film() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = json!({ "name": "Unkeyed Film", "studio": "S" });
    for _ in 0..2 {
        let response = app
            .post_json("/api/v1/films", &body, Some(&user.token))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(!replayed(&response));
    }
    assert_eq!(films_named(&app, "Unkeyed Film").await, 2);
}

#[tokio::test]
async fn the_seed_route_replays_with_its_deprecation_headers() {
    let app = spawn_app_with(&[]).await;
    let user = app.new_user().await;
    let body = json!({ "name": "Seed Keyed", "studio": "S" });
    let first = post_with_key(&app, "/add_film", &user.token, "seed", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let retry = post_with_key(&app, "/add_film", &user.token, "seed", &body).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(replayed(&retry));
    assert_eq!(retry.headers()["location"], first.headers()["location"]);
    assert!(retry.headers().contains_key("deprecation"));
    assert!(retry.headers().contains_key("sunset"));
    assert_eq!(films_named(&app, "Seed Keyed").await, 1);
}

/// The document tells clients all of this: the request header, the replay marker, the 409
/// and 422, the seed routes' sunset, and the draft's rate-limit fields on every answer.
#[tokio::test]
async fn the_api_document_describes_the_headers() {
    let app = spawn_app().await;
    let document: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    for path in ["/api/v1/films", "/add_film"] {
        let create = &document["paths"][path]["post"];
        let parameters = create["parameters"].as_array().unwrap();
        let key = parameters
            .iter()
            .find(|parameter| parameter["name"] == "Idempotency-Key")
            .expect("the Idempotency-Key parameter");
        assert_eq!(key["in"], "header");
        assert!(key["schema"]["maxLength"].is_u64() && key["schema"]["pattern"].is_string());
        let responses = &create["responses"];
        assert!(responses["201"]["headers"]["Idempotency-Replayed"].is_object());
        for status in ["409", "422", "429"] {
            assert!(responses[status].is_object(), "{path} {status}");
        }
        for header in ["RateLimit-Policy", "RateLimit", "X-RateLimit-Remaining"] {
            assert!(
                responses["429"]["headers"][header].is_object(),
                "{path} {header}"
            );
        }
    }
    for (path, method, status) in [("/", "get", "200"), ("/add_film", "post", "201")] {
        let headers = &document["paths"][path][method]["responses"][status]["headers"];
        for header in ["Deprecation", "Sunset", "Link"] {
            assert!(headers[header].is_object(), "{method} {path} {header}");
        }
    }
}
