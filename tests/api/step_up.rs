//! Step-up: changing the password or the email, creating an API key and deleting the account
//! (and turning MFA off: `mfa::turning_mfa_off_needs_a_recent_login`) need a login
//! at most `STEP_UP_MAX_AGE_SECS` old (the access token's `auth_time`). Refreshing keeps the
//! login's time; only a new login renews it.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, assert_problem, spawn_app_with};

/// Short enough to outlive in a test, long enough for a request right after the login.
const MAX_AGE_SECS: u64 = 3;

async fn step_up_app() -> TestApp {
    spawn_app_with(&[("STEP_UP_MAX_AGE_SECS", &MAX_AGE_SECS.to_string())]).await
}

/// The `auth_time` claim of an access token (read, not verified: the server verifies).
fn auth_time(access_token: &str) -> u64 {
    let payload = access_token.split('.').nth(1).expect("a JWT payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("JSON claims");
    claims["auth_time"].as_u64().expect("an auth_time claim")
}

/// The step-up actions, each with a body that would succeed on a recent login.
async fn step_up_actions(app: &TestApp, user: &TestUser, token: &str) -> Vec<Response> {
    let password = json!({ "current_password": user.password,
        "new_password": "an-entirely-different-passphrase" });
    let key = json!({ "name": "late key", "scopes": ["read"] });
    vec![
        app.put_json("/api/v1/users/me/password", &password, Some(token))
            .await,
        app.post_json("/api/v1/users/me/api-keys", &key, Some(token))
            .await,
        app.request(Method::DELETE, "/api/v1/users/me")
            .bearer(token)
            .json(&json!({ "password": user.password }))
            .send()
            .await,
        app.put_json(
            "/api/v1/users/me/email",
            &json!({ "new_email": format!("moved-{}@example.org", user.username),
                "password": user.password }),
            Some(token),
        )
        .await,
    ]
}

async fn assert_reauthentication_required(response: Response) {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(problem["type"], "/problems/reauthentication-required");
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains("error=\"insufficient_user_authentication\"")
            && challenge.contains(&format!("max_age={MAX_AGE_SECS}")),
        "RFC 9470 challenge: {challenge}"
    );
}

async fn key_count(app: &TestApp, token: &str) -> usize {
    let response = app.get("/api/v1/users/me/api-keys", Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a JSON body");
    body["items"].as_array().expect("items").len()
}

#[tokio::test]
async fn an_old_login_must_log_in_again_and_refreshing_does_not_make_it_recent() {
    let app = step_up_app().await;
    let user = app.new_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;
    // A fresh login passes.
    app.create_api_key(&access, &["read"]).await;

    tokio::time::sleep(Duration::from_secs(MAX_AGE_SECS + 1)).await;
    let response = app.refresh(&refresh).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the session itself lives on"
    );
    let refreshed: Value = response.json().await.expect("a JSON body");
    let refreshed = refreshed["access_token"].as_str().expect("a token");
    assert_eq!(
        auth_time(refreshed),
        auth_time(&access),
        "a refresh keeps the login's auth_time"
    );
    for token in [access.as_str(), refreshed] {
        for response in step_up_actions(&app, &user, token).await {
            assert_reauthentication_required(response).await;
        }
    }

    // Nothing changed: same password, one key, the account is there.
    assert_eq!(key_count(&app, refreshed).await, 1);
    let again = app.access_token(&user.username, &user.password).await;
    assert!(
        auth_time(&again) > auth_time(&access),
        "a new login is newer"
    );
    // ... and a new login may, in the order that keeps its token valid: key, password, deletion.
    assert_eq!(key_count(&app, &again).await, 1);
    app.create_api_key(&again, &["read"]).await;
    let responses = step_up_actions(&app, &user, &again).await;
    assert_eq!(
        responses[0].status(),
        StatusCode::NO_CONTENT,
        "password changed"
    );
    let last = app
        .access_token(&user.username, "an-entirely-different-passphrase")
        .await;
    let deleted = app
        .request(Method::DELETE, "/api/v1/users/me")
        .bearer(&last)
        .json(&json!({ "password": "an-entirely-different-passphrase" }))
        .send()
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "account deleted");
}

#[tokio::test]
async fn a_login_carries_its_own_time_as_auth_time() {
    let app = step_up_app().await;
    let before = filmvault::auth::unix_now();
    let user = app.new_user().await;
    let after = filmvault::auth::unix_now();
    let issued = auth_time(&user.token);
    assert!(
        (before..=after).contains(&issued),
        "{before} <= {issued} <= {after}"
    );
}

#[tokio::test]
async fn an_api_key_can_never_step_up() {
    let app = step_up_app().await;
    let user = app.new_user().await;
    let key = app.api_key_secret(&user.token, &["read", "write"]).await;
    let responses = [
        app.request(Method::POST, "/api/v1/users/me/api-keys")
            .api_key(&key)
            .json(&json!({ "name": "by key", "scopes": ["read"] }))
            .send()
            .await,
        app.request(Method::DELETE, "/api/v1/users/me")
            .api_key(&key)
            .json(&json!({ "password": user.password }))
            .send()
            .await,
    ];
    for response in responses {
        let problem = assert_problem(response, StatusCode::FORBIDDEN).await;
        assert_eq!(
            problem["type"], "/problems/forbidden",
            "not a re-login hint"
        );
    }
    assert_eq!(key_count(&app, &user.token).await, 1);
    assert_eq!(
        app.get("/api/v1/users/me", Some(&user.token))
            .await
            .status(),
        StatusCode::OK
    );
}
