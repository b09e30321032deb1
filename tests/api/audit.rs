//! The audit trail: one row per security event, with the right actor and outcome.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

async fn request_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn registration_and_login_are_audited_once_each_with_their_actor() {
    let app = spawn_app().await;
    let user = app.new_user().await;

    let registered = app.audit_rows("user.register").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].actor_id, Some(user.id));
    assert_eq!(registered[0].outcome, "success");
    assert_eq!(
        registered[0].target.as_deref(),
        Some(format!("user:{}", user.id).as_str())
    );
    assert_eq!(registered[0].client_ip.as_deref(), Some("127.0.0.1"));

    let logins = app.audit_rows("auth.login").await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].actor_id, Some(user.id));
    assert_eq!(logins[0].outcome, "success");
}

#[tokio::test]
async fn a_failed_login_is_one_row_with_its_reason_and_never_the_password() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let response = app.login(&user.username, "S3cret-wrong-password").await;
    let request_id = request_id_of(&response).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.login("ghost_user", "S3cret-wrong-password").await;

    let rows = app.wait_for_audit("auth.login", 3).await;
    let failures: Vec<_> = rows.iter().filter(|r| r.outcome == "failure").collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].reason.as_deref(), Some("wrong password"));
    assert_eq!(failures[0].actor_id, None);
    assert_eq!(failures[0].request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(
        failures[0].target.as_deref(),
        Some(format!("username:{}", user.username).as_str())
    );
    assert_eq!(failures[1].reason.as_deref(), Some("unknown user"));
    let generic = app.audit_rows("http.unauthenticated").await;
    assert!(
        generic.is_empty(),
        "the failed logins were audited twice: {generic:?}"
    );

    let everything: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(target, '') || coalesce(reason, '') FROM audit_events")
            .fetch_all(&app.db().await)
            .await
            .unwrap();
    assert!(everything.iter().all(|text| !text.contains("S3cret")));
}

#[tokio::test]
async fn token_events_are_audited_refresh_reuse_and_logout() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;
    let rotated: Value = app.refresh(&refresh).await.json().await.unwrap();
    app.refresh(&refresh).await; // reuse
    let (access2, _) = app.token_pair(&user.username, &user.password).await;
    app.post_json("/api/v1/auth/logout", &json!({}), Some(&access2))
        .await;
    let _ = (access, rotated);

    let refreshed = app.audit_rows("auth.refresh").await;
    assert_eq!(refreshed.len(), 1);
    assert_eq!(
        (refreshed[0].actor_id, refreshed[0].outcome.as_str()),
        (Some(user.id), "success")
    );
    let reuse = app.audit_rows("auth.refresh_reuse").await;
    assert_eq!(reuse.len(), 1);
    assert_eq!(
        (reuse[0].actor_id, reuse[0].outcome.as_str()),
        (Some(user.id), "failure")
    );
    let logout = app.audit_rows("auth.logout").await;
    assert_eq!(logout.len(), 1);
    assert_eq!(logout[0].actor_id, Some(user.id));
}

#[tokio::test]
async fn api_keys_films_and_admin_actions_are_audited_with_their_actor() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;

    let key = app.create_api_key(&user.token, &["read"]).await;
    app.delete(
        &format!("/api/v1/users/me/api-keys/{}", key["id"]),
        Some(&user.token),
    )
    .await;
    let film = app.create_film(&user.token, "Audited", "Studio").await;
    let film_path = format!("/api/v1/films/{}", film["id"]);
    app.patch_json(&film_path, &json!({ "year": 2000 }), Some(&user.token))
        .await;
    app.delete(&film_path, Some(&admin.token)).await;
    app.patch_json(
        &format!("/api/v1/admin/users/{}", user.id),
        &json!({ "role": "admin", "disabled": true }),
        Some(&admin.token),
    )
    .await;

    for (action, actor) in [
        ("api_key.create", user.id),
        ("api_key.revoke", user.id),
        ("film.create", user.id),
        ("film.update", user.id),
        ("film.delete", admin.id),
        ("admin.role_change", admin.id),
        ("admin.user_disable", admin.id),
    ] {
        let rows = app.audit_rows(action).await;
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        assert_eq!(rows[0].actor_id, Some(actor), "{action}");
        assert_eq!(rows[0].outcome, "success", "{action}");
    }
    assert_eq!(
        app.audit_rows("admin.role_change").await[0]
            .reason
            .as_deref(),
        Some("role=admin")
    );
}

#[tokio::test]
async fn every_401_403_and_429_leaves_one_row() {
    let app = spawn_app_with(&[("RATE_LIMIT_GLOBAL", "8/min")]).await;
    let user = app.new_user().await;

    let unauthenticated = app.get("/api/v1/users/me", None).await;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let forbidden = app.get("/api/v1/admin/users", Some(&user.token)).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let mut limited = None;
    for _ in 0..10 {
        let response = app.get("/api/v1/films", None).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the limit was reached");
    let limited_id = request_id_of(&limited).await;

    let rows = app.wait_for_audit("http.unauthenticated", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].target.as_deref(), Some("GET /api/v1/users/me"));
    let rows = app.wait_for_audit("http.forbidden", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor_id, Some(user.id));
    assert_eq!(rows[0].outcome, "denied");
    let rows = app.wait_for_audit("http.rate_limited", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].request_id.as_deref(), Some(limited_id.as_str()));
}

#[tokio::test]
async fn the_audit_trail_cannot_be_rewritten() {
    let app = spawn_app().await;
    app.new_user().await;
    let db = app.db().await;
    assert!(
        sqlx::query("UPDATE audit_events SET outcome = 'failure'")
            .execute(&db)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_events")
            .execute(&db)
            .await
            .is_err()
    );
}

async fn events(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/admin/audit-events{query}"), Some(token))
        .await
}

#[tokio::test]
async fn admins_can_filter_and_page_through_the_audit_trail() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for i in 0..3 {
        app.create_film(&user.token, &format!("F{i}"), "S").await;
    }

    let page: Value = events(
        &app,
        &admin.token,
        &format!("?actor={}&action=film.create&limit=2", user.id),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == "film.create" && e["actor_id"] == user.id)
    );
    let rest: Value = events(
        &app,
        &admin.token,
        &format!("?actor={}&action=film.create&limit=2&offset=2", user.id),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);

    let future: Value = events(&app, &admin.token, "?since=2999-01-01")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(future["total"], 0);
    let past: Value = events(&app, &admin.token, "?until=2000-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(past["total"], 0);
    let all: Value = events(&app, &admin.token, "?since=2000-01-01&limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert!(all["total"].as_i64().unwrap() >= 6);

    for bad in [
        "?since=yesterday",
        "?action=DROP%20TABLE",
        "?limit=500",
        "?actor=abc",
        "?who=me",
    ] {
        let response = events(&app, &admin.token, bad).await;
        assert!(
            response.status().is_client_error(),
            "{bad}: {}",
            response.status()
        );
    }
    assert_problem(events(&app, &user.token, "").await, StatusCode::FORBIDDEN).await;
}
