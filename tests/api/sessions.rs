//! Refresh tokens: rotation, reuse detection, logout, and revocation that bites at once.

use std::cell::Cell;

use filmvault::db;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STRONG_PASSWORD, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn login_returns_an_opaque_refresh_token_of_256_bits() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (_, refresh) = app.token_pair(&user.username, &user.password).await;
    assert_eq!(refresh.len(), 43, "32 random bytes, base64url");
    assert!(!refresh.contains('.'), "opaque, not a JWT");
    let stored: i64 = db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = $1",
        refresh.as_bytes()
    )
    .await
    .unwrap();
    assert_eq!(stored, 0, "the token itself is never stored");
}

#[tokio::test]
async fn refreshing_rotates_the_pair_and_the_old_refresh_token_stops_working() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (_, first) = app.token_pair(&user.username, &user.password).await;

    let response = app.refresh(&first).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        app.get("/api/v1/users/me", Some(&access)).await.status(),
        StatusCode::OK
    );

    assert_problem(app.refresh(&first).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn reusing_a_rotated_token_revokes_the_whole_session_newest_tokens_included() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (_, stolen) = app.token_pair(&user.username, &user.password).await;
    let rotated: Value = app.refresh(&stolen).await.json().await.unwrap();
    let newest_refresh = rotated["refresh_token"].as_str().unwrap();
    let newest_access = rotated["access_token"].as_str().unwrap();

    // The thief (or the victim) presents the already-rotated token.
    assert_problem(app.refresh(&stolen).await, StatusCode::UNAUTHORIZED).await;

    assert_problem(app.refresh(newest_refresh).await, StatusCode::UNAUTHORIZED).await;
    let me = app.get("/api/v1/users/me", Some(newest_access)).await;
    assert_problem(me, StatusCode::UNAUTHORIZED).await;

    // Other sessions of the same user are not touched.
    let (other_access, other_refresh) = app.token_pair(&user.username, &user.password).await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&other_access))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.refresh(&other_refresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_ends_the_session_for_refresh_and_access_tokens() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;
    let (other_access, _) = app.token_pair(&user.username, &user.password).await;

    let response = app
        .post_json("/api/v1/auth/logout", &json!({}), Some(&access))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_problem(app.refresh(&refresh).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        app.get("/api/v1/users/me", Some(&access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&other_access))
            .await
            .status(),
        StatusCode::OK,
        "another device stays logged in"
    );
}

#[tokio::test]
async fn an_expired_or_unknown_refresh_token_is_refused() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let (_, refresh) = app.token_pair(&user.username, &user.password).await;
    db::execute!(
        &mut app.db().await,
        "UPDATE refresh_tokens SET expires_at = 1"
    )
    .await
    .unwrap();
    assert_problem(app.refresh(&refresh).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        app.refresh("not-a-token-we-issued").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn disabling_a_user_stops_their_refresh_and_access_tokens_at_once() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let (access, refresh) = app.token_pair(&user.username, &user.password).await;

    let response = app
        .patch_json(
            &format!("/api/v1/admin/users/{}", user.id),
            &json!({ "disabled": true }),
            Some(&admin.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let profile: Value = response.json().await.unwrap();
    assert_eq!(profile["disabled"], true);

    assert_problem(app.refresh(&refresh).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        app.get("/api/v1/users/me", Some(&access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.login(&user.username, &user.password).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Re-enabled, the user logs in again; the old tokens stay dead.
    app.patch_json(
        &format!("/api/v1/admin/users/{}", user.id),
        &json!({ "disabled": false }),
        Some(&admin.token),
    )
    .await;
    let (fresh, _) = app.token_pair(&user.username, &user.password).await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&fresh)).await.status(),
        StatusCode::OK
    );
    assert_problem(
        app.get("/api/v1/users/me", Some(&access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_role_change_ends_the_users_sessions_so_the_old_role_cannot_linger() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let other_admin = app.new_admin().await;
    let (access, refresh) = app
        .token_pair(&other_admin.username, &other_admin.password)
        .await;
    assert_eq!(
        app.get("/api/v1/admin/users", Some(&access)).await.status(),
        StatusCode::OK
    );

    let response = app
        .patch_json(
            &format!("/api/v1/admin/users/{}", other_admin.id),
            &json!({ "role": "user" }),
            Some(&admin.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    assert_problem(
        app.get("/api/v1/admin/users", Some(&access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(app.refresh(&refresh).await, StatusCode::UNAUTHORIZED).await;
    let (as_user, _) = app
        .token_pair(&other_admin.username, &other_admin.password)
        .await;
    assert_problem(
        app.get("/api/v1/admin/users", Some(&as_user)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let first = spawn_app().await;
    let user = first.new_user().await;
    let (access, _) = first.token_pair(&user.username, &user.password).await;
    first
        .post_json("/api/v1/auth/logout", &json!({}), Some(&access))
        .await;

    let second = crate::helpers::spawn_app_on(&first.database, &[]).await;
    assert_problem(
        second.get("/api/v1/users/me", Some(&access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        second
            .get("/api/v1/users/me", Some(&user.token))
            .await
            .status(),
        StatusCode::OK
    );
}

/// A login that read the old password hash while the password was being changed must not
/// come out of the change with a live session.
///
/// With one hashing thread, argon2 runs in order of arrival. A chain of back-to-back logins
/// beside the change therefore always has one that reads the old hash while the change
/// computes its new hash, and whose own verification runs after the change has committed:
/// the window is the argon2 run itself, every round.
#[tokio::test]
async fn no_login_with_the_old_password_survives_a_concurrent_password_change() {
    const ROUNDS: usize = 30;
    let app = spawn_app_with(&[("PASSWORD_HASH_CONCURRENCY", "1")]).await;
    let user = app.new_user().await;
    let mut password = user.password.clone();
    let mut logins_during_changes = 0;
    for round in 0..ROUNDS {
        let new_password = format!("{STRONG_PASSWORD}-round-{round}");
        let (changer, _) = app.token_pair(&user.username, &password).await;
        let changed = Cell::new(false);
        let change = async {
            let response = app
                .put_json(
                    "/api/v1/users/me/password",
                    &json!({ "current_password": password, "new_password": new_password }),
                    Some(&changer),
                )
                .await;
            changed.set(true);
            response
        };
        let logins = async {
            let mut sessions = Vec::new();
            while !changed.get() {
                let response = app.login(&user.username, &password).await;
                if response.status() == StatusCode::OK {
                    let body: Value = response.json().await.unwrap();
                    sessions.push((
                        body["access_token"].as_str().unwrap().to_owned(),
                        body["refresh_token"].as_str().unwrap().to_owned(),
                    ));
                }
            }
            sessions
        };
        let (change, sessions) = tokio::join!(change, logins);
        assert_eq!(change.status(), StatusCode::NO_CONTENT, "round {round}");

        for (access, refresh) in &sessions {
            let me = app.get("/api/v1/users/me", Some(access)).await;
            assert_eq!(
                me.status(),
                StatusCode::UNAUTHORIZED,
                "round {round}: an access token from the old password outlived the change"
            );
            assert_eq!(
                app.refresh(refresh).await.status(),
                StatusCode::UNAUTHORIZED,
                "round {round}: a refresh token from the old password outlived the change"
            );
        }
        logins_during_changes += sessions.len();
        password = new_password;
    }
    // Each round's first login verifies before the new hash is computed and succeeds (its
    // session then ends with the change): proof that logins did run beside the changes.
    assert!(
        logins_during_changes >= ROUNDS / 2,
        "only {logins_during_changes} logins succeeded beside the changes: the race was not run"
    );
}
