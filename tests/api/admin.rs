//! Administration of accounts: listing, roles, disabling, and the last-admin guard.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn patch_user(app: &TestApp, token: &str, id: i64, body: Value) -> reqwest::Response {
    app.patch_json(&format!("/api/v1/admin/users/{id}"), &body, Some(token))
        .await
}

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_disabled() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    for body in [json!({ "role": "user" }), json!({ "disabled": true })] {
        let response = patch_user(&app, &admin.token, admin.id, body).await;
        assert_problem(response, StatusCode::CONFLICT).await;
    }
    let me: Value = app
        .get("/api/v1/users/me", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");
    assert_eq!(me["disabled"], false);
}

#[tokio::test]
async fn with_a_second_admin_one_may_step_down() {
    let app = spawn_app().await;
    let first = app.new_admin().await;
    let second = app.new_admin().await;
    let response = patch_user(&app, &second.token, first.id, json!({ "role": "user" })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = patch_user(&app, &second.token, second.id, json!({ "role": "user" })).await;
    assert_problem(response, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn an_admin_can_promote_a_user() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let response = patch_user(&app, &admin.token, user.id, json!({ "role": "admin" })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let profile: Value = response.json().await.unwrap();
    assert_eq!(profile["role"], "admin");
    let token = app.access_token(&user.username, &user.password).await;
    assert_eq!(
        app.get("/api/v1/admin/users", Some(&token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn user_management_is_admin_only_and_validated() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let response = patch_user(&app, &user.token, user.id, json!({ "role": "admin" })).await;
    assert_problem(response, StatusCode::FORBIDDEN).await;
    let response = patch_user(&app, &admin.token, 999_999, json!({ "disabled": true })).await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    for body in [
        json!({}),
        json!({ "role": "root" }),
        json!({ "token_version": 0 }),
    ] {
        let response = patch_user(&app, &admin.token, user.id, body.clone()).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let page: Value = app
        .get("/api/v1/admin/users?limit=1&offset=1", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}
