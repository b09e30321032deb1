//! `DELETE /api/v1/users/me`: an account deleted with its password is gone at once (every
//! token, key and login), its votes are withdrawn to the exact count, its films stay in the
//! catalogue without an author, and its name and email are free again. A wrong password
//! changes nothing and spends the login budget; the last active administrator stays.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    STRONG_PASSWORD, TestApp, TestUser, assert_problem, spawn_app, spawn_app_with,
};

pub async fn delete_account(app: &TestApp, token: &str, password: &str) -> Response {
    app.request(Method::DELETE, "/api/v1/users/me")
        .bearer(token)
        .json(&json!({ "password": password }))
        .send()
        .await
}

async fn vote(app: &TestApp, user: &TestUser, film: i64, vote: &str) {
    let path = format!("/api/v1/films/{film}/vote");
    let response = app
        .put_json(&path, &json!({ "vote": vote }), Some(&user.token))
        .await;
    assert!(
        response.status().is_success(),
        "vote: {}",
        response.status()
    );
}

async fn film(app: &TestApp, id: i64) -> Value {
    let response = app.get(&format!("/api/v1/films/{id}"), None).await;
    assert_eq!(response.status(), StatusCode::OK, "film {id}");
    response.json().await.expect("a film")
}

fn counters(film: &Value) -> (i64, i64) {
    (
        film["likes"].as_i64().expect("likes"),
        film["dislikes"].as_i64().expect("dislikes"),
    )
}

/// What a user can reach with each of their credentials: access token, refresh token, API key.
struct Credentials {
    access: String,
    refresh: String,
    api_key: String,
}

impl Credentials {
    async fn of(app: &TestApp, user: &TestUser) -> Self {
        let (access, refresh) = app.token_pair(&user.username, &user.password).await;
        let api_key = app.api_key_secret(&access, &["read", "write"]).await;
        Self {
            access,
            refresh,
            api_key,
        }
    }

    /// The status of `/users/me` with the access token and with the API key.
    async fn me(&self, app: &TestApp) -> (StatusCode, StatusCode) {
        let by_token = app.get("/api/v1/users/me", Some(&self.access)).await;
        let by_key = app
            .request(Method::GET, "/api/v1/users/me")
            .api_key(&self.api_key)
            .send()
            .await;
        (by_token.status(), by_key.status())
    }
}

#[tokio::test]
async fn a_wrong_password_deletes_nothing_and_spends_the_login_budget() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_USERNAME", "4/hour")]).await;
    let user = app.new_user().await; // one login
    let credentials = Credentials::of(&app, &user).await; // two
    let owned = app.create_film(&user.token, "Kept", "Studio").await;
    let owned = owned["id"].as_i64().expect("an id");
    vote(&app, &user, owned, "like").await;

    for _ in 0..2 {
        let response = delete_account(&app, &credentials.access, "not-my-password").await;
        let body = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(body["type"], "/problems/invalid-credentials");
    }
    let response = app
        .request(Method::DELETE, "/api/v1/users/me")
        .bearer(&credentials.access)
        .json(&json!({ "password": user.password, "also": 1 }))
        .send()
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    // Four attempts spent (two logins, two wrong passwords): even the right password is now
    // refused without being looked at, so a thief holding a token learns nothing.
    let response = delete_account(&app, &credentials.access, &user.password).await;
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/rate-limited");

    assert_eq!(credentials.me(&app).await, (StatusCode::OK, StatusCode::OK));
    assert_eq!(
        app.refresh(&credentials.refresh).await.status(),
        StatusCode::OK
    );
    let kept = film(&app, owned).await;
    assert_eq!(kept["owner"], user.username.as_str());
    assert_eq!(counters(&kept), (1, 0));

    let events = app.wait_for_audit("user.delete", 3).await;
    let outcomes: Vec<_> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failure", "failure", "denied"]);
    assert!(events.iter().all(|e| e.actor_id == Some(user.id)));
}

#[tokio::test]
async fn a_deleted_account_stops_at_once_and_leaves_its_films_and_exact_counters() {
    let app = spawn_app().await;
    let leaving = app.new_user().await;
    let staying = app.new_user().await;
    let credentials = Credentials::of(&app, &leaving).await;
    let theirs = app.create_film(&leaving.token, "Theirs", "Studio").await["id"]
        .as_i64()
        .expect("an id");
    let other = app.create_film(&staying.token, "Other", "Studio").await["id"]
        .as_i64()
        .expect("an id");
    vote(&app, &leaving, theirs, "like").await;
    vote(&app, &leaving, other, "dislike").await;
    vote(&app, &staying, theirs, "like").await;
    vote(&app, &staying, other, "like").await;
    assert_eq!(counters(&film(&app, theirs).await), (2, 0));
    assert_eq!(counters(&film(&app, other).await), (1, 1));

    let response = delete_account(&app, &credentials.access, &leaving.password).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_eq!(
        credentials.me(&app).await,
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        app.refresh(&credentials.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let login = app.login(&leaving.username, &leaving.password).await;
    assert_problem(login, StatusCode::UNAUTHORIZED).await;

    let kept = film(&app, theirs).await;
    assert_eq!(kept["owner"], Value::Null, "kept, without an author");
    assert_eq!(counters(&kept), (1, 0), "their like withdrawn");
    assert_eq!(
        counters(&film(&app, other).await),
        (1, 0),
        "their dislike too"
    );
    // The film now belongs to the curated catalogue: its former author cannot edit it, and
    // nor can a user who takes the freed name.
    let newcomer = app.register(&leaving.username, STRONG_PASSWORD).await;
    // 202 whether or not the email was free; the login below proves the account was made.
    assert_eq!(newcomer.status(), StatusCode::ACCEPTED, "name free");
    let newcomer_token = app.access_token(&leaving.username, STRONG_PASSWORD).await;
    let edit = app
        .patch_json(
            &format!("/api/v1/films/{theirs}"),
            &json!({ "name": "Mine now" }),
            Some(&newcomer_token),
        )
        .await;
    assert_problem(edit, StatusCode::FORBIDDEN).await;
    assert_eq!(film(&app, theirs).await["owner"], Value::Null);

    let events = app.wait_for_audit("user.delete", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, "success");
    assert_eq!(events[0].actor_id, Some(leaving.id));
    assert_eq!(events[0].target, Some(format!("user:{}", leaving.id)));
}

#[tokio::test]
async fn a_deleted_account_keeps_no_personal_data_and_admins_no_longer_see_it() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let leaving = app.new_user().await;
    let response = delete_account(&app, &leaving.token, &leaving.password).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let (username, email_sealed, email_index, password_hash): (
        String,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        String,
    ) = filmvault::db::fetch_one!(
        &mut app.db().await,
        "SELECT username, email_sealed, email_index, password_hash FROM users WHERE id = $1",
        leaving.id
    )
    .await
    .expect("the tombstone");
    assert_eq!(username, format!("deleted-{}", leaving.id));
    assert_eq!((email_sealed, email_index), (None, None));
    assert_eq!(password_hash, "");
    let sessions: i64 = filmvault::db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM sessions WHERE user_id = $1",
        leaving.id
    )
    .await
    .expect("a count");
    assert_eq!(
        sessions, 0,
        "where and with what the user signed in is kept"
    );

    let path = format!("/api/v1/admin/users/{}", leaving.id);
    let revive = app
        .patch_json(&path, &json!({ "disabled": false }), Some(&admin.token))
        .await;
    assert_problem(revive, StatusCode::NOT_FOUND).await;
    let listing: Value = app
        .get("/api/v1/admin/users?limit=100", Some(&admin.token))
        .await
        .json()
        .await
        .expect("a page");
    let ids: Vec<_> = listing["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|user| user["id"].as_i64())
        .collect();
    assert_eq!(ids, [Some(admin.id)]);
    assert_eq!(listing["total"], 1);
}

#[tokio::test]
async fn the_last_active_administrator_cannot_delete_their_account() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let response = delete_account(&app, &admin.token, &admin.password).await;
    let body = assert_problem(response, StatusCode::CONFLICT).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("last active administrator")),
        "{body}"
    );
    assert_eq!(
        app.get("/api/v1/users/me", Some(&admin.token))
            .await
            .status(),
        StatusCode::OK
    );
    let denied = app.wait_for_audit("user.delete", 1).await;
    assert_eq!(denied[0].outcome, "denied");

    // With another active administrator, they can.
    let other = app.new_admin().await;
    let response = delete_account(&app, &admin.token, &admin.password).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = delete_account(&app, &other.token, &other.password).await;
    assert_problem(response, StatusCode::CONFLICT).await;
}
