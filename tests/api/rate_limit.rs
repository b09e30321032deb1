//! Rate limits: brute-force brake on login, per-IP for everything, per-principal for writes,
//! headers that count down, and no dodging through X-Forwarded-For.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, assert_rate_limited, header_u64, spawn_app_with};

async fn failed_login(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .request(Method::POST, "/api/v1/auth/login")
        .json(&json!({ "username": "someone", "password": "guess-number-n" }));
    if let Some(ip) = forwarded_for {
        request = request.forwarded_for(ip);
    }
    request.send().await
}

#[tokio::test]
async fn the_sixth_login_in_a_minute_is_refused_with_retry_after() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "5/min")]).await;
    for attempt in 1..=5 {
        let response = failed_login(&app, None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
        assert_eq!(header_u64(&response, "x-ratelimit-limit"), 5);
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 5 - attempt);
    }
    assert_rate_limited(failed_login(&app, None).await).await;
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_does_not_reset_the_count() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "5/min")]).await;
    for i in 0..5 {
        failed_login(&app, Some(&format!("203.0.113.{i}"))).await;
    }
    let response = failed_login(&app, Some("198.51.100.77")).await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
}

/// The control for the test above: when the peer *is* a trusted proxy, the forwarded address
/// is the client, so distinct clients have distinct budgets.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH", "5/min"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    for _ in 0..5 {
        failed_login(&app, Some("203.0.113.1")).await;
    }
    assert_problem(
        failed_login(&app, Some("203.0.113.1")).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_problem(
        failed_login(&app, Some("203.0.113.2")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn the_headers_of_a_limited_route_count_down() {
    let app = spawn_app_with(&[("RATE_LIMIT_GLOBAL", "10/min")]).await;
    let first = app.get("/api/v1/films", None).await;
    let second = app.get("/api/v1/films", None).await;
    assert_eq!(header_u64(&first, "x-ratelimit-limit"), 10);
    assert_eq!(header_u64(&first, "x-ratelimit-remaining"), 9);
    assert_eq!(header_u64(&second, "x-ratelimit-remaining"), 8);
    let reset = header_u64(&second, "x-ratelimit-reset");
    assert!((1..=60).contains(&reset), "{reset}");
}

/// The IETF httpapi draft's fields carry the same numbers as the `X-` headers, on answers and
/// on the 429, named after the strictest limiter passed.
#[tokio::test]
async fn the_draft_ratelimit_fields_match_the_x_headers() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_GLOBAL", "10/min"),
        ("RATE_LIMIT_WRITE", "2/min"),
    ])
    .await;
    let read = app.get("/api/v1/films", None).await;
    assert_draft_fields_match(&read, "global", 10, 60);
    let user = app.new_user().await;
    let film = json!({ "name": "Counted", "studio": "S" });
    let write = app
        .post_json("/api/v1/films", &film, Some(&user.token))
        .await;
    assert_eq!(write.status(), StatusCode::CREATED);
    assert_draft_fields_match(&write, "write", 2, 60);
    app.post_json("/api/v1/films", &film, Some(&user.token))
        .await;
    let refused = app
        .post_json("/api/v1/films", &film, Some(&user.token))
        .await;
    assert_draft_fields_match(&refused, "write", 2, 60);
    assert_rate_limited(refused).await;
}

pub fn assert_draft_fields_match(
    response: &reqwest::Response,
    policy: &str,
    quota: u64,
    window: u64,
) {
    assert_eq!(
        response.headers()["ratelimit-policy"],
        format!("\"{policy}\";q={quota};w={window}").as_str()
    );
    assert_eq!(header_u64(response, "x-ratelimit-limit"), quota);
    let expected = format!(
        "\"{policy}\";r={};t={}",
        header_u64(response, "x-ratelimit-remaining"),
        header_u64(response, "x-ratelimit-reset")
    );
    assert_eq!(response.headers()["ratelimit"], expected.as_str());
}

#[tokio::test]
async fn writes_are_limited_per_user_not_per_ip() {
    let app = spawn_app_with(&[("RATE_LIMIT_WRITE", "2/min")]).await;
    let busy = app.new_user().await;
    let other = app.new_user().await;
    for i in 0..2 {
        app.create_film(&busy.token, &format!("Film {i}"), "Studio")
            .await;
    }
    let third = app
        .post_json(
            "/api/v1/films",
            &json!({ "name": "One too many", "studio": "S" }),
            Some(&busy.token),
        )
        .await;
    assert_problem(third, StatusCode::TOO_MANY_REQUESTS).await;
    let others = app
        .post_json(
            "/api/v1/films",
            &json!({ "name": "Mine", "studio": "S" }),
            Some(&other.token),
        )
        .await;
    assert_eq!(
        others.status(),
        StatusCode::CREATED,
        "another user from the same IP is unaffected"
    );
    assert_eq!(
        app.get("/api/v1/films", Some(&busy.token)).await.status(),
        StatusCode::OK,
        "reads are not writes"
    );
}

/// A film creation with an API key (`X-API-Key`) or an access token (`Authorization`).
async fn create_film_with(app: &TestApp, credential: &str, name: &str) -> reqwest::Response {
    let request = app.request(Method::POST, "/api/v1/films");
    let request = if credential.starts_with("fk_") {
        request.api_key(credential)
    } else {
        request.bearer(credential)
    };
    request
        .json(&json!({ "name": name, "studio": "S" }))
        .send()
        .await
}

#[tokio::test]
async fn the_write_budget_is_the_users_whichever_credential_they_present() {
    let app = spawn_app_with(&[("RATE_LIMIT_WRITE", "4/hour")]).await;
    let user = app.new_user().await;
    let mut credentials = Vec::new();
    for _ in 0..3 {
        // Each creation is a write of the user's: three of the four spent.
        credentials.push(app.api_key_secret(&user.token, &["read", "write"]).await);
    }
    credentials.push(user.token.clone());

    let mut statuses = Vec::new();
    for round in 0..2 {
        for (i, credential) in credentials.iter().enumerate() {
            let response = create_film_with(&app, credential, &format!("Film {round}.{i}")).await;
            statuses.push(response.status());
        }
    }
    assert_eq!(statuses[0], StatusCode::CREATED, "the fourth write");
    assert!(
        statuses[1..]
            .iter()
            .all(|status| *status == StatusCode::TOO_MANY_REQUESTS),
        "every credential shares the spent budget: {statuses:?}"
    );
}

#[tokio::test]
async fn made_up_credentials_get_no_write_budget_of_their_own() {
    let app = spawn_app_with(&[("RATE_LIMIT_WRITE", "2/hour")]).await;
    let user = app.new_user().await;
    for made_up in ["fk_made_up_1", "forged.bearer.token"] {
        let response = create_film_with(&app, made_up, "Spam").await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let third = create_film_with(&app, "fk_made_up_2", "Spam").await;
    assert_problem(third, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        create_film_with(&app, &user.token, "Mine").await.status(),
        StatusCode::CREATED,
        "a genuine user from the same address keeps their own budget"
    );
}

#[tokio::test]
async fn the_seed_routes_count_against_the_write_budget() {
    let app = spawn_app_with(&[("RATE_LIMIT_WRITE", "3/min"), ("SEED_DEMO_DATA", "true")]).await;
    let user = app.new_user().await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/?like=1", Some(&user.token)).await.status(),
            StatusCode::OK
        );
    }
    assert_problem(
        app.get("/?like=1", Some(&user.token)).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
}

#[tokio::test]
async fn one_username_gets_a_limited_number_of_guesses_from_any_number_of_ips() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_LOGIN_PER_USERNAME", "3/hour"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    let victim = app.new_user().await; // one attempt: the successful login
    for i in 0..2 {
        let response = app
            .login_from(
                &format!("198.51.100.{i}"),
                &victim.username,
                "wrong-guess-here",
            )
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let blocked = app
        .login_from(
            "192.0.2.200",
            &victim.username.to_uppercase(),
            &victim.password,
        )
        .await;
    assert_problem(blocked, StatusCode::TOO_MANY_REQUESTS).await;
    let bystander = app.new_user().await;
    assert_eq!(
        app.login(&bystander.username, &bystander.password)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn health_probes_are_never_rate_limited() {
    let app = spawn_app_with(&[("RATE_LIMIT_GLOBAL", "1/min")]).await;
    app.get("/api/v1/films", None).await;
    assert_problem(
        app.get("/api/v1/films", None).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    for _ in 0..5 {
        assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK);
        assert_eq!(
            app.get("/health/ready", None).await.status(),
            StatusCode::OK
        );
    }
}
