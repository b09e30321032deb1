//! Password change: the current password is proven, other sessions end, keys stay.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

const NEW_PASSWORD: &str = "a-brand-new-passphrase";

#[tokio::test]
async fn after_a_password_change_old_sessions_end_and_the_new_password_logs_in() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;
    let key = app.api_key_secret(&access, &["read"]).await;

    let response = app
        .put_json(
            "/api/v1/users/me/password",
            &json!({ "current_password": user.password, "new_password": NEW_PASSWORD }),
            Some(&access),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_problem(app.refresh(&refresh).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        app.get("/api/v1/users/me", Some(&user.token)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.login(&user.username, &user.password).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.login(&user.username, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    let keyed = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), StatusCode::OK, "API keys stay valid");
}

#[tokio::test]
async fn a_wrong_current_password_is_401_and_counts_toward_the_login_limit() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_USERNAME", "3/hour")]).await;
    let user = app.new_user().await; // its login used one attempt
    for _ in 0..2 {
        let response = app
            .put_json(
                "/api/v1/users/me/password",
                &json!({ "current_password": "not-my-password", "new_password": NEW_PASSWORD }),
                Some(&user.token),
            )
            .await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let response = app.login(&user.username, &user.password).await;
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/rate-limited");
}

#[tokio::test]
async fn the_new_password_follows_the_registration_rules() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for new_password in ["short", "password1234", user.password.as_str()] {
        let response = app
            .put_json(
                "/api/v1/users/me/password",
                &json!({ "current_password": user.password, "new_password": new_password }),
                Some(&user.token),
            )
            .await;
        let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(body["errors"][0]["field"], "new_password");
    }
}
