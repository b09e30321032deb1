//! Sessions as their owner sees them: listed with where they come from, ended one by one or
//! all but the current, by the user or an administrator, and by idleness. An ended session's
//! access and refresh tokens stop at once, on every instance.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    cluster::spawn_cluster,
    helpers::{TestApp, TestUser, assert_problem, spawn_app, spawn_app_with, without_request_id},
    test_redis::test_redis_url,
};

/// A login from a client that names itself `user_agent`: `(access, refresh)`.
async fn login_as(app: &TestApp, user: &TestUser, user_agent: &str) -> (String, String) {
    let response = app
        .request(Method::POST, "/api/v1/auth/login")
        .header("user-agent", user_agent)
        .json(&json!({ "username": user.username, "password": user.password }))
        .send()
        .await;
    assert_eq!(response.status(), StatusCode::OK, "login");
    let body: Value = response.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.get("/api/v1/users/me/sessions", Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK, "session list");
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

/// The id of the session listed with `user_agent`.
async fn session_id(app: &TestApp, token: &str, user_agent: &str) -> String {
    let listed = sessions(app, token).await;
    let session = listed
        .iter()
        .find(|s| s["user_agent"] == user_agent)
        .unwrap_or_else(|| panic!("no session of {user_agent} in {listed:?}"));
    session["id"].as_str().unwrap().to_owned()
}

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/v1/users/me", Some(token)).await.status()
}

#[tokio::test]
async fn two_logins_are_listed_with_their_user_agents_and_the_current_one_marked() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (phone, _) = login_as(&app, &user, "Phone/1.0").await;
    let long_agent = format!("Laptop/2.0 {}", "x".repeat(1000));
    let (laptop, _) = login_as(&app, &user, &long_agent).await;

    let listed = sessions(&app, &laptop).await;
    let of = |prefix: &str| {
        listed
            .iter()
            .find(|s| {
                s["user_agent"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no {prefix} session in {listed:?}"))
            .clone()
    };
    let (phone_session, laptop_session) = (of("Phone/1.0"), of("Laptop/2.0"));
    assert_eq!(laptop_session["current"], true);
    assert_eq!(phone_session["current"], false);
    assert_eq!(
        listed.iter().filter(|s| s["current"] == true).count(),
        1,
        "one current session"
    );
    assert_eq!(
        laptop_session["user_agent"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        256,
        "a long user agent is cut"
    );
    for session in [&phone_session, &laptop_session] {
        assert_eq!(session["ip"], "127.0.0.1");
        assert!(session["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(session["last_used_at"].is_string());
    }
    // Asked from the phone, the phone's session is the current one.
    let from_phone = session_id(&app, &phone, "Phone/1.0").await;
    let listed = sessions(&app, &phone).await;
    let current: Vec<_> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], from_phone.as_str());
}

#[tokio::test]
async fn ending_a_session_stops_its_access_and_refresh_tokens_at_once_and_spares_the_other() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (phone, phone_refresh) = login_as(&app, &user, "Phone/1.0").await;
    let (laptop, laptop_refresh) = login_as(&app, &user, "Laptop/2.0").await;
    let phone_session = session_id(&app, &laptop, "Phone/1.0").await;

    let path = format!("/api/v1/users/me/sessions/{phone_session}");
    assert_eq!(
        app.delete(&path, Some(&laptop)).await.status(),
        StatusCode::NO_CONTENT
    );

    assert_eq!(
        me(&app, &phone).await,
        StatusCode::UNAUTHORIZED,
        "access token"
    );
    assert_eq!(
        app.refresh(&phone_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&app, &laptop).await,
        StatusCode::OK,
        "the other session works"
    );
    assert_eq!(app.refresh(&laptop_refresh).await.status(), StatusCode::OK);
    let listed = sessions(&app, &laptop).await;
    assert!(
        listed.iter().all(|s| s["id"] != phone_session.as_str()),
        "no longer listed"
    );
    // Ending it again: it is no live session of the caller any more.
    assert_problem(
        app.delete(&path, Some(&laptop)).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let events = app.wait_for_audit("auth.session_end", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_id, Some(user.id));
    assert_eq!(
        events[0].target.as_deref(),
        Some(format!("session:{phone_session}").as_str())
    );
}

#[tokio::test]
async fn ending_all_other_sessions_keeps_only_the_current_one() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (phone, phone_refresh) = login_as(&app, &user, "Phone/1.0").await;
    let (laptop, _) = login_as(&app, &user, "Laptop/2.0").await;

    let response = app.delete("/api/v1/users/me/sessions", Some(&laptop)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for token in [&phone, &user.token] {
        assert_eq!(me(&app, token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.refresh(&phone_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(&app, &laptop).await, StatusCode::OK);
    let listed = sessions(&app, &laptop).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(app.audit_rows("auth.session_end").await.len(), 2);
}

#[tokio::test]
async fn another_users_session_id_is_a_404_like_an_unknown_one_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let (alice_phone, alice_refresh) = login_as(&app, &alice, "Phone/1.0").await;
    let alice_session = session_id(&app, &alice_phone, "Phone/1.0").await;

    let path = format!("/api/v1/users/me/sessions/{alice_session}");
    let theirs = assert_problem(
        app.delete(&path, Some(&bob.token)).await,
        StatusCode::NOT_FOUND,
    );
    let unknown = app
        .delete(
            "/api/v1/users/me/sessions/no-such-session",
            Some(&bob.token),
        )
        .await;
    let unknown = assert_problem(unknown, StatusCode::NOT_FOUND).await;
    assert_eq!(
        without_request_id(theirs.await),
        without_request_id(unknown)
    );

    assert_eq!(me(&app, &alice_phone).await, StatusCode::OK);
    assert_eq!(app.refresh(&alice_refresh).await.status(), StatusCode::OK);
    assert!(app.audit_rows("auth.session_end").await.is_empty());
    // Nor do Bob's listing or end-all reach Alice's sessions.
    assert!(
        sessions(&app, &bob.token)
            .await
            .iter()
            .all(|s| s["id"] != alice_session.as_str())
    );
    app.delete("/api/v1/users/me/sessions", Some(&bob.token))
        .await;
    assert_eq!(me(&app, &alice_phone).await, StatusCode::OK);
}

#[tokio::test]
async fn an_api_key_cannot_list_or_end_sessions() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let key = app.api_key_secret(&user.token, &["read", "write"]).await;
    for method in [Method::GET, Method::DELETE] {
        let response = app
            .request(method, "/api/v1/users/me/sessions")
            .api_key(&key)
            .send()
            .await;
        assert_problem(response, StatusCode::FORBIDDEN).await;
    }
    assert_eq!(me(&app, &user.token).await, StatusCode::OK);
}

#[tokio::test]
async fn an_admin_lists_and_ends_a_users_sessions() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (phone, phone_refresh) = login_as(&app, &user, "Phone/1.0").await;
    let path = format!("/api/v1/admin/users/{}/sessions", user.id);

    assert_problem(app.get(&path, Some(&phone)).await, StatusCode::FORBIDDEN).await;
    assert_problem(app.delete(&path, Some(&phone)).await, StatusCode::FORBIDDEN).await;
    let response = app.get(&path, Some(&admin.token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let listed = body["items"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        2,
        "new_user's login and the phone: {listed:?}"
    );
    assert!(listed.iter().any(|s| s["user_agent"] == "Phone/1.0"));
    assert!(listed.iter().all(|s| s["current"] == false));

    assert_eq!(
        app.delete(&path, Some(&admin.token)).await.status(),
        StatusCode::NO_CONTENT
    );
    for token in [&phone, &user.token] {
        assert_eq!(me(&app, token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.refresh(&phone_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&app, &admin.token).await,
        StatusCode::OK,
        "the admin's own session"
    );
    let body: Value = app
        .get(&path, Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"], json!([]));
    let events = app.audit_rows("admin.session_end").await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.actor_id == Some(admin.id)));
}

#[tokio::test]
async fn a_session_unused_for_longer_than_the_idle_timeout_ends() {
    // Timeout 2 s, touch interval 1 s: a session ends after more than 3 s without use.
    let app = spawn_app_with(&[("SESSION_IDLE_TIMEOUT_SECS", "2")]).await;
    let user = app.new_user().await;
    let (_, refresh) = login_as(&app, &user, "Phone/1.0").await;
    let (idle_access, idle_refresh) = login_as(&app, &user, "Laptop/2.0").await;
    let pause = || tokio::time::sleep(Duration::from_millis(2000));

    pause().await;
    let response = app.refresh(&refresh).await;
    assert_eq!(response.status(), StatusCode::OK, "a refresh is a use");
    let body: Value = response.json().await.unwrap();
    let (access, refresh) = (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    );
    pause().await;
    assert_eq!(
        me(&app, &access).await,
        StatusCode::OK,
        "4 s after login, 2 s after use"
    );
    pause().await;
    // 4 s after the refresh, 2 s after the request with its access token.
    let response = app.refresh(&refresh).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an access-token request is a use"
    );
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    // The laptop's session has not been used for 6 s: it has ended.
    let listed = sessions(&app, &access).await;
    assert!(
        listed.iter().all(|s| s["user_agent"] != "Laptop/2.0"),
        "{listed:?}"
    );
    assert_eq!(
        me(&app, &idle_access).await,
        StatusCode::UNAUTHORIZED,
        "idle access token"
    );
    assert_eq!(
        app.refresh(&idle_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );

    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(&app, &access).await, StatusCode::UNAUTHORIZED);
    let events = app.audit_rows("auth.session_idle").await;
    // The laptop's, the phone's, and new_user's own login (idle since the start).
    assert!(events.len() >= 2, "{events:?}");
}

#[tokio::test]
async fn an_ended_sessions_token_stops_on_the_other_instance_too() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let (first, second) = spawn_cluster(&redis_url, &[]).await;
    let user = first.new_user().await;
    let (phone, _) = login_as(&first, &user, "Phone/1.0").await;
    let (laptop, _) = login_as(&first, &user, "Laptop/2.0").await;
    assert_eq!(
        me(&second, &phone).await,
        StatusCode::OK,
        "the second instance knows it"
    );
    let phone_session = session_id(&first, &laptop, "Phone/1.0").await;

    let path = format!("/api/v1/users/me/sessions/{phone_session}");
    assert_eq!(
        first.delete(&path, Some(&laptop)).await.status(),
        StatusCode::NO_CONTENT
    );

    let start = Instant::now();
    while me(&second, &phone).await != StatusCode::UNAUTHORIZED {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the second instance still accepts the ended session's token"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(me(&second, &laptop).await, StatusCode::OK);
}
