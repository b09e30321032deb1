//! Plain HTTP with TLS on (ASVS 5.0 4.1.2): pages are redirected, health probes answered, and
//! an API request is refused with a 403, every genuine credential it carried revoked at once,
//! audited and its owner mailed.

use filmvault::db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestUser, assert_problem, client, spawn_tls_app, without_request_id,
};

/// A TLS app whose helpers speak HTTPS, its plain-HTTP address, and a user signed in over
/// HTTPS.
async fn tls_app_with_user() -> (TestApp, String, TestUser) {
    let mut app = spawn_tls_app(&[]).await;
    let plain = app.use_https();
    let user = app.new_user().await;
    (app, plain, user)
}

/// A request to the plain-HTTP listener at `plain`.
fn plain_request(plain: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    client().request(method, format!("{plain}{path}"))
}

async fn assert_https_required(response: reqwest::Response) -> Value {
    assert!(response.headers().get("location").is_none(), "no redirect");
    let problem = assert_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], "/problems/https-required");
    without_request_id(problem)
}

async fn mails_of_kind(app: &TestApp, kind: &str) -> i64 {
    db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM mail_outbox WHERE kind = $1",
        kind
    )
    .await
    .unwrap()
}

/// The exposure's audit row: the owner as actor, the kind named, the credential not.
async fn assert_exposure_audited(app: &TestApp, user: &TestUser, kind: &str, secret: &str) {
    let rows = app.audit_rows("security.credential_exposed").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].actor_id, Some(user.id));
    let reason = rows[0].reason.clone().unwrap_or_default();
    assert!(reason.starts_with(kind), "{reason}");
    let row = format!("{:?}", rows[0]);
    assert!(!row.contains(secret), "the credential is in the audit row");
    assert_eq!(mails_of_kind(app, "credential_exposed").await, 1);
}

#[tokio::test]
async fn a_bearer_token_sent_over_plain_http_is_refused_and_revoked_at_once() {
    let (app, plain, user) = tls_app_with_user().await;
    let response = plain_request(&plain, Method::GET, "/api/v1/users/me")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_https_required(response).await;

    let after = app.get("/api/v1/users/me", Some(&user.token)).await;
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the token still works"
    );
    assert_exposure_audited(&app, &user, "access token", &user.token).await;
}

#[tokio::test]
async fn an_api_key_sent_over_plain_http_is_refused_and_revoked_at_once() {
    let (app, plain, user) = tls_app_with_user().await;
    let key = app.api_key_secret(&user.token, &["read"]).await;
    let response = plain_request(&plain, Method::GET, "/api/v1/films")
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_https_required(response).await;

    let after = app
        .request(Method::GET, "/api/v1/users/me")
        .api_key(&key)
        .send()
        .await;
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the key still works"
    );
    assert_exposure_audited(&app, &user, "API key", &key).await;
    let me = app.get("/api/v1/users/me", Some(&user.token)).await;
    assert_eq!(me.status(), StatusCode::OK, "only the key was exposed");
}

#[tokio::test]
async fn a_refresh_token_sent_over_plain_http_ends_its_session_at_once() {
    let (app, plain, user) = tls_app_with_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;
    let response = plain_request(&plain, Method::POST, "/api/v1/auth/refresh")
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap();
    assert_https_required(response).await;

    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let same_session = app.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(same_session.status(), StatusCode::UNAUTHORIZED);
    let other_session = app.get("/api/v1/users/me", Some(&user.token)).await;
    assert_eq!(other_session.status(), StatusCode::OK, "one session ended");
    assert_exposure_audited(&app, &user, "refresh token", &refresh).await;
}

/// Nobody can make the service mail an account's owner, or revoke anything, with credentials
/// they invented; and the answer is the same as for genuine ones.
#[tokio::test]
async fn forged_credentials_revoke_nothing_mail_nobody_and_get_the_same_answer() {
    let (app, plain, user) = tls_app_with_user().await;
    let (header, _) = user.token.rsplit_once('.').unwrap();
    let forged_token = format!("{header}.{}", "A".repeat(86));
    let forged_key = format!("fk_0123456789ab_{}", "B".repeat(43));
    let send = |request: reqwest::RequestBuilder| async move {
        assert_https_required(request.send().await.unwrap()).await
    };
    let bare = send(plain_request(&plain, Method::GET, "/api/v1/users/me")).await;
    let forged = [
        plain_request(&plain, Method::GET, "/api/v1/users/me").bearer_auth(&forged_token),
        plain_request(&plain, Method::GET, "/api/v1/users/me").header("x-api-key", &forged_key),
        plain_request(&plain, Method::POST, "/api/v1/auth/refresh")
            .json(&json!({ "refresh_token": "not-a-real-refresh-token" })),
    ];
    for request in forged {
        assert_eq!(send(request).await, bare);
    }
    let genuine =
        send(plain_request(&plain, Method::GET, "/api/v1/users/me").bearer_auth(&user.token)).await;
    assert_eq!(genuine, bare, "the answer tells a genuine token apart");
    assert_eq!(
        app.audit_rows("security.credential_exposed").await.len(),
        1,
        "only the genuine token was revoked"
    );
    assert_eq!(mails_of_kind(&app, "credential_exposed").await, 1);
}

#[tokio::test]
async fn pages_are_redirected_health_answered_and_the_rest_refused_on_plain_http() {
    let mut app = spawn_tls_app(&[]).await;
    let https_port = app.https_url("").rsplit(':').next().unwrap().to_owned();
    let plain = app.use_https();
    for page in [
        "/static/index.html",
        "/static/app.js?v=1",
        "/docs/",
        "/docs",
    ] {
        let response = plain_request(&plain, Method::GET, page)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{page}");
        let target = format!("https://localhost:{https_port}{page}");
        assert_eq!(response.headers()["location"], target.as_str());
    }
    for probe in ["/health/live", "/health/ready"] {
        let response = plain_request(&plain, Method::GET, probe)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe}");
    }
    for api in [
        "/",
        "/api/v1/films",
        "/openapi.json",
        "/metrics",
        "/no/such/route",
    ] {
        let response = plain_request(&plain, Method::GET, api)
            .send()
            .await
            .unwrap();
        assert_https_required(response).await;
    }
}
