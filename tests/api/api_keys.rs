//! API keys: shown once, stored hashed, scoped, revocable, never listed or logged.

use filmvault::db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{LOGS, TestApp, assert_problem, spawn_app, without_request_id};

async fn with_key(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> reqwest::Response {
    let mut request = app.request(method.clone(), path).api_key(key);
    if method == reqwest::Method::POST {
        request = request.json(&json!({ "name": "Keyed", "studio": "Automation" }));
    }
    request.send().await
}

#[tokio::test]
async fn a_key_is_shown_once_with_a_recognisable_prefix_and_stored_only_as_a_hash() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let created = app.create_api_key(&user.token, &["read"]).await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("fk_"), "{key}");
    assert_eq!(key.len(), 59);
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["read"]));

    let (prefix, hash): (String, Vec<u8>) =
        db::fetch_one!(&mut app.db().await, "SELECT prefix, key_hash FROM api_keys")
            .await
            .unwrap();
    assert!(!key.contains(&String::from_utf8_lossy(&hash).into_owned()) && hash.len() == 32);
    assert_eq!(format!("fk_{prefix}"), created["prefix"]);

    let listed = app
        .get("/api/v1/users/me/api-keys", Some(&user.token))
        .await;
    assert_eq!(listed.status(), StatusCode::OK);
    let text = listed.text().await.unwrap();
    assert!(!text.contains(key), "the list shows the key");
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["items"][0]["name"], "test key");
    assert!(listed["items"][0].get("key").is_none());
    assert!(listed["items"][0]["last_used_at"].is_null());
}

#[tokio::test]
async fn a_read_key_reads_but_may_not_write() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let key = app.api_key_secret(&user.token, &["read"]).await;

    let me = with_key(&app, reqwest::Method::GET, "/api/v1/users/me", &key).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["id"], user.id);

    let write = with_key(&app, reqwest::Method::POST, "/api/v1/films", &key).await;
    assert_problem(write, StatusCode::FORBIDDEN).await;
    let seed_write = with_key(&app, reqwest::Method::POST, "/add_film", &key).await;
    assert_problem(seed_write, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_write_key_writes_and_its_use_is_recorded() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let key = app.api_key_secret(&user.token, &["read", "write"]).await;
    let created = with_key(&app, reqwest::Method::POST, "/api/v1/films", &key).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let film: Value = created.json().await.unwrap();
    assert_eq!(film["owner"], user.username.as_str());

    let listed: Value = app
        .get("/api/v1/users/me/api-keys", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    let last_used = &listed["items"][0]["last_used_at"];
    assert!(last_used.is_string(), "last_used_at was never recorded");
}

#[tokio::test]
async fn revoked_unknown_and_malformed_keys_get_the_same_401() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let created = app.create_api_key(&user.token, &["read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let revoke = app
        .delete(
            &format!("/api/v1/users/me/api-keys/{}", created["id"]),
            Some(&user.token),
        )
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);

    let unknown = format!("{}{}", &key[..key.len() - 4], "AAAA");
    let mut bodies = Vec::new();
    for candidate in [
        key.as_str(),
        unknown.as_str(),
        "fk_nothing",
        "not-a-key-at-all",
    ] {
        let response = with_key(&app, reqwest::Method::GET, "/api/v1/users/me", candidate).await;
        bodies.push(without_request_id(
            assert_problem(response, StatusCode::UNAUTHORIZED).await,
        ));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    let listed: Value = app
        .get("/api/v1/users/me/api-keys", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn another_users_key_cannot_be_revoked_and_looks_missing() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let other = app.new_user().await;
    let created = app.create_api_key(&owner.token, &["read"]).await;
    let response = app
        .delete(
            &format!("/api/v1/users/me/api-keys/{}", created["id"]),
            Some(&other.token),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        with_key(&app, reqwest::Method::GET, "/api/v1/users/me", key)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_key_cannot_manage_keys_or_change_the_password() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let key = app.api_key_secret(&user.token, &["read", "write"]).await;
    let mint = app
        .request(Method::POST, "/api/v1/users/me/api-keys")
        .api_key(&key)
        .json(&json!({ "name": "child", "scopes": ["write"] }))
        .send()
        .await;
    assert_problem(mint, StatusCode::FORBIDDEN).await;
    let password = app
        .request(Method::PUT, "/api/v1/users/me/password")
        .api_key(&key)
        .json(
            &json!({ "current_password": user.password, "new_password": "a-brand-new-passphrase" }),
        )
        .send()
        .await;
    assert_problem(password, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_key_with_every_scope_can_neither_list_nor_revoke_keys_nor_log_out() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let created = app.create_api_key(&user.token, &["read", "write"]).await;
    let key = created["key"].as_str().unwrap();
    let key_path = format!("/api/v1/users/me/api-keys/{}", created["id"]);
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/users/me/api-keys"),
        (reqwest::Method::DELETE, key_path.as_str()),
        (reqwest::Method::POST, "/api/v1/auth/logout"),
    ] {
        let response = with_key(&app, method.clone(), path, key).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_problem(response, StatusCode::FORBIDDEN).await;
    }
    // Nothing happened: the key still works and the login session is still open.
    let me = with_key(&app, reqwest::Method::GET, "/api/v1/users/me", key).await;
    assert_eq!(me.status(), StatusCode::OK);
    let keys: Value = app
        .get("/api/v1/users/me/api-keys", Some(&user.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_key_of_a_disabled_account_stops_working() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let key = app.api_key_secret(&user.token, &["read"]).await;
    app.patch_json(
        &format!("/api/v1/admin/users/{}", user.id),
        &json!({ "disabled": true }),
        Some(&admin.token),
    )
    .await;
    let response = with_key(&app, reqwest::Method::GET, "/api/v1/users/me", &key).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn invalid_key_requests_are_refused() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for body in [
        json!({ "name": "k", "scopes": [] }),
        json!({ "name": "", "scopes": ["read"] }),
        json!({ "name": "k", "scopes": ["admin"] }),
        json!({ "name": "k", "scopes": ["read"], "user_id": 1 }),
    ] {
        let response = app
            .post_json("/api/v1/users/me/api-keys", &body, Some(&user.token))
            .await;
        assert!(response.status().is_client_error(), "{body}");
    }
}

#[tokio::test]
async fn keys_and_tokens_never_reach_the_logs() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;
    let key = app.api_key_secret(&access, &["read", "write"]).await;
    with_key(&app, reqwest::Method::GET, "/api/v1/users/me", &key).await;
    with_key(&app, reqwest::Method::POST, "/api/v1/films", &key).await;
    let rotated: Value = app.refresh(&refresh).await.json().await.unwrap();
    app.refresh(&refresh).await;
    let logs = LOGS.contents();
    assert!(logs.contains("request completed"), "the logs were captured");
    for secret in [
        key.as_str(),
        &key[15..],
        access.as_str(),
        access.split('.').nth(2).unwrap(),
        refresh.as_str(),
        rotated["refresh_token"].as_str().unwrap(),
        rotated["access_token"].as_str().unwrap(),
        user.password.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}
