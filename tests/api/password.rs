//! Password change: the current password is proven (within the login budget), other
//! sessions end, keys stay.

use filmvault::db;
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

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
        .request(Method::GET, "/api/v1/users/me")
        .api_key(&key)
        .send()
        .await;
    assert_eq!(keyed.status(), StatusCode::OK, "API keys stay valid");
}

async fn change_password(app: &TestApp, token: &str, current: &str, new: &str) -> Response {
    app.put_json(
        "/api/v1/users/me/password",
        &json!({ "current_password": current, "new_password": new }),
        Some(token),
    )
    .await
}

/// The same request, arriving through the trusted proxy on behalf of `client_ip`.
async fn change_password_from(
    app: &TestApp,
    client_ip: &str,
    token: &str,
    current: &str,
) -> Response {
    app.request(Method::PUT, "/api/v1/users/me/password")
        .forwarded_for(client_ip)
        .bearer(token)
        .json(&json!({ "current_password": current, "new_password": NEW_PASSWORD }))
        .send()
        .await
}

#[tokio::test]
async fn password_changes_spend_the_login_budget_before_the_password_is_checked() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_USERNAME", "3/hour")]).await;
    let user = app.new_user().await; // its login used one attempt
    for _ in 0..2 {
        let response = change_password(&app, &user.token, "not-my-password", NEW_PASSWORD).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }

    // The budget is spent: even the right password is refused without being looked at, so
    // a thief holding a token learns nothing from the answer.
    let response = change_password(&app, &user.token, &user.password, NEW_PASSWORD).await;
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/rate-limited");
    assert_eq!(
        app.get("/api/v1/users/me", Some(&user.token))
            .await
            .status(),
        StatusCode::OK,
        "the password did not change: the session is still alive"
    );
    let response = app.login(&user.username, &user.password).await;
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/rate-limited");

    let denied = app.wait_for_audit("user.password_change", 3).await;
    assert_eq!(denied.len(), 3);
    assert_eq!(denied[2].outcome, "denied");
    assert_eq!(denied[2].actor_id, Some(user.id));
}

#[tokio::test]
async fn wrong_current_passwords_count_as_failed_logins_and_a_locked_account_cannot_change_it() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("SUSPICIOUS_LOGIN_IPS_PER_USERNAME", "3"),
    ])
    .await;
    let victim = app.new_user().await;
    for i in 1..=3 {
        let guess = change_password_from(
            &app,
            &format!("203.0.113.{i}"),
            &victim.token,
            "wrong-guess-1234",
        )
        .await;
        assert_problem(guess, StatusCode::UNAUTHORIZED).await;
    }
    let events = app.wait_for_audit("security.suspicious_login", 1).await;
    assert_eq!(
        events.first().and_then(|e| e.target.as_deref()),
        Some(format!("username:{}", victim.username).as_str()),
        "three IPs guessing through the password change raised the alarm"
    );

    let locked = app.login(&victim.username, &victim.password).await;
    let body = assert_problem(locked, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/login-locked");
    let right_guess =
        change_password_from(&app, "203.0.113.4", &victim.token, &victim.password).await;
    let body = assert_problem(right_guess, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/login-locked");
    assert_eq!(
        app.get("/api/v1/users/me", Some(&victim.token))
            .await
            .status(),
        StatusCode::OK,
        "the locked account kept its password"
    );
}

/// Two sessions change the password at once, both from the right current password: the one
/// that commits second verified a hash that is no longer stored, and must not silently undo
/// the first change. One hashing thread makes both verifications run before either new hash.
#[tokio::test]
async fn of_two_concurrent_password_changes_only_the_first_to_commit_wins() {
    let app = spawn_app_with(&[("PASSWORD_HASH_CONCURRENCY", "1")]).await;
    let user = app.new_user().await;
    let (first, _) = app.token_pair(&user.username, &user.password).await;
    let (second, _) = app.token_pair(&user.username, &user.password).await;
    let candidates = ["first-new-passphrase", "second-new-passphrase"];

    let (a, b) = tokio::join!(
        change_password(&app, &first, &user.password, candidates[0]),
        change_password(&app, &second, &user.password, candidates[1]),
    );

    let statuses = [a.status(), b.status()];
    let winner = match statuses {
        [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED] => 0,
        [StatusCode::UNAUTHORIZED, StatusCode::NO_CONTENT] => 1,
        other => panic!("expected one 204 and one 401, got {other:?}"),
    };
    let loser = 1 - winner;
    assert_eq!(
        app.login(&user.username, candidates[winner]).await.status(),
        StatusCode::OK
    );
    assert_problem(
        app.login(&user.username, candidates[loser]).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
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

/// A login with an old-format hash rewrites the hash after verifying it. Racing a password
/// change, that rewrite must not put the old password back.
#[tokio::test]
async fn a_login_upgrading_an_old_hash_cannot_undo_a_concurrent_password_change() {
    let app = spawn_app_with(&[("PASSWORD_HASH_CONCURRENCY", "1")]).await;
    let mut db = app.db().await;
    for _ in 0..3 {
        let user = app.new_user().await;
        db::execute!(
            &mut db,
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            user.id,
            weak_hash(&user.password)
        )
        .await
        .unwrap();

        let (change, login) = tokio::join!(
            change_password(&app, &user.token, &user.password, NEW_PASSWORD),
            app.login(&user.username, &user.password),
        );
        assert_eq!(change.status(), StatusCode::NO_CONTENT);
        if login.status() == StatusCode::OK {
            let body: serde_json::Value = login.json().await.unwrap();
            let refresh = body["refresh_token"].as_str().unwrap();
            assert_problem(app.refresh(refresh).await, StatusCode::UNAUTHORIZED).await;
        }
        assert_problem(
            app.login(&user.username, &user.password).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(
            app.login(&user.username, NEW_PASSWORD).await.status(),
            StatusCode::OK
        );
    }
}

/// A hash at weaker argon2 parameters than the server's, as an older release stored them.
fn weak_hash(password: &str) -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version, password_hash::SaltString};
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(4096, 1, 1, None).unwrap(),
    )
    .hash_password(
        password.as_bytes(),
        &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
    )
    .unwrap()
    .to_string()
}
