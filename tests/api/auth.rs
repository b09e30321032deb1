//! Registration, login and the caller's own profile.

use std::time::{Duration, Instant};

use filmvault::db;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    STRONG_PASSWORD, assert_problem, spawn_app, unique_username, without_request_id,
};

#[tokio::test]
async fn registration_answers_202_and_never_returns_the_password_or_its_hash() {
    let app = spawn_app().await;
    let username = unique_username("alice");
    let response = app.register(&username, STRONG_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let text = response.text().await.unwrap();
    assert!(!text.contains(STRONG_PASSWORD));
    assert!(!text.contains("argon2"));
    assert!(
        !text.contains(&username),
        "the body is the same for everyone: {text}"
    );

    let token = app.access_token(&username, STRONG_PASSWORD).await;
    let profile: Value = app
        .get("/api/v1/users/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["username"], username.as_str());
    assert_eq!(profile["role"], "user");
}

fn registration(username: &str, email: &str) -> Value {
    json!({ "username": username, "email": email, "password": STRONG_PASSWORD })
}

/// Usernames are public (films show them): a taken one is a 409. Emails are not: a taken
/// address gets the very answer a free one gets, and no account.
#[tokio::test]
async fn a_taken_username_is_a_conflict_but_a_taken_email_is_not_told() {
    let app = spawn_app().await;
    let username = unique_username("Bob");
    assert_eq!(
        app.register(&username, STRONG_PASSWORD).await.status(),
        StatusCode::ACCEPTED
    );

    let same_name_other_case = app
        .register(&username.to_uppercase(), STRONG_PASSWORD)
        .await;
    assert_problem(same_name_other_case, StatusCode::CONFLICT).await;

    let taken_email = format!("{username}@example.com").to_uppercase();
    let taken = app
        .post_json(
            "/api/v1/auth/register",
            &registration(&unique_username("other"), &taken_email),
            None,
        )
        .await;
    let free = app
        .post_json(
            "/api/v1/auth/register",
            &registration(&unique_username("other"), "free.address@example.com"),
            None,
        )
        .await;
    assert_eq!(taken.status(), StatusCode::ACCEPTED);
    assert_eq!(free.status(), StatusCode::ACCEPTED);
    assert_eq!(
        taken.headers().get("content-type"),
        free.headers().get("content-type")
    );
    assert_eq!(taken.text().await.unwrap(), free.text().await.unwrap());
    app.assert_email_taken(&taken_email).await;

    // A taken username with a taken email is still the username's 409.
    let both_taken = app
        .post_json(
            "/api/v1/auth/register",
            &registration(&username, &taken_email),
            None,
        )
        .await;
    assert_problem(both_taken, StatusCode::CONFLICT).await;
}

/// Median times of registrations with a taken and with a free address, measured
/// alternately so that load from other tests weighs on both alike.
async fn median_registration_times(
    app: &crate::helpers::TestApp,
    taken_email: &str,
) -> (Duration, Duration) {
    let mut taken_times = Vec::new();
    let mut free_times = Vec::new();
    for i in 0..9 {
        let free_email = format!("free{i}@example.com");
        for (email, times) in [
            (taken_email, &mut taken_times),
            (free_email.as_str(), &mut free_times),
        ] {
            let body = registration(&unique_username("timed"), email);
            let start = Instant::now();
            let response = app.post_json("/api/v1/auth/register", &body, None).await;
            times.push(start.elapsed());
            assert_eq!(response.status(), StatusCode::ACCEPTED, "{email}");
        }
    }
    taken_times.sort();
    free_times.sort();
    (taken_times[4], free_times[4])
}

/// Both paths hash the password and write a mail and an audit event: timing must not tell
/// a registered address either.
#[tokio::test]
async fn registering_a_taken_email_takes_as_long_as_a_free_one() {
    let app = spawn_app().await;
    let owner = app.new_user().await;
    let taken_email = format!("{}@example.com", owner.username);

    // Generous: argon2 dominates both, but a new account writes a few more rows, which a
    // loaded test machine (the whole suite at once) can stretch.
    let (taken, free) = median_registration_times(&app, &taken_email).await;
    assert!(
        taken * 3 > free && free * 3 > taken,
        "taken email {taken:?} vs free email {free:?}"
    );
}

#[tokio::test]
async fn registration_rules_are_enforced_field_by_field_without_echoing_the_input() {
    let app = spawn_app().await;
    let cases = [
        ("ab", "a@example.com", STRONG_PASSWORD, "username"),
        ("bad name!", "a@example.com", STRONG_PASSWORD, "username"),
        (
            &"x".repeat(33),
            "a@example.com",
            STRONG_PASSWORD,
            "username",
        ),
        ("goodname", "not-an-email", STRONG_PASSWORD, "email"),
        ("goodname", "a@example.com", "Short-pass1", "password"),
        ("goodname", "a@example.com", "password1234", "password"),
        ("goodname", "a@example.com", "Qwertyuiop123", "password"),
        ("goodname", "a@example.com", &"p".repeat(129), "password"),
    ];
    for (username, email, password, field) in cases {
        let response = app
            .post_json(
                "/api/v1/auth/register",
                &json!({ "username": username, "email": email, "password": password }),
                None,
            )
            .await;
        let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, vec![field], "{username} / {email}");
        assert!(
            !body.to_string().contains(password),
            "the password is echoed"
        );
    }
}

#[tokio::test]
async fn login_returns_a_bearer_token_with_its_lifetime() {
    let app = spawn_app().await;
    let username = unique_username("carol");
    app.register(&username, STRONG_PASSWORD).await;
    let response = app.login(&username, STRONG_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    let username = unique_username("dave");
    app.register(&username, STRONG_PASSWORD).await;

    let wrong_password = app.login(&username, "not-the-password-at-all").await;
    let wrong_password = assert_problem(wrong_password, StatusCode::UNAUTHORIZED).await;
    let unknown_user = app.login("nobody_here", "not-the-password-at-all").await;
    let unknown_user = assert_problem(unknown_user, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        without_request_id(wrong_password),
        without_request_id(unknown_user)
    );
}

/// Median times of failed logins for `existing` and for an unknown name, measured
/// alternately so that load from other tests weighs on both alike.
async fn median_failed_login_times(
    app: &crate::helpers::TestApp,
    existing: &str,
) -> (Duration, Duration) {
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    for _ in 0..9 {
        for (username, times) in [
            (existing, &mut known_times),
            ("nobody_at_all", &mut unknown_times),
        ] {
            let start = Instant::now();
            let response = app.login(username, "not-the-password-at-all").await;
            times.push(start.elapsed());
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    }
    known_times.sort();
    unknown_times.sort();
    (known_times[4], unknown_times[4])
}

/// Without a dummy hash, an unknown user would be answered in a fraction of the time argon2
/// takes, and timing alone would reveal which usernames exist.
#[tokio::test]
async fn an_unknown_user_costs_a_full_password_verification() {
    let app = spawn_app().await;
    let username = unique_username("erin");
    app.register(&username, STRONG_PASSWORD).await;

    let (existing, unknown) = median_failed_login_times(&app, &username).await;
    assert!(
        unknown * 2 > existing && existing * 2 > unknown,
        "existing user {existing:?} vs unknown user {unknown:?}"
    );
}

#[tokio::test]
async fn a_weaker_stored_hash_is_upgraded_at_the_next_successful_login() {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version, password_hash::SaltString};
    let app = spawn_app().await;
    let username = unique_username("frank");
    let weak_hash = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(4096, 1, 1, None).unwrap(),
    )
    .hash_password(
        STRONG_PASSWORD.as_bytes(),
        &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
    )
    .unwrap()
    .to_string();
    let mut db = app.db().await;
    db::execute!(
        &mut db,
        "INSERT INTO users (username, email_index, password_hash) VALUES ($1, $2, $3)",
        &username,
        uuid::Uuid::new_v4().as_bytes().to_vec(),
        &weak_hash
    )
    .await
    .unwrap();

    let response = app.login(&username, STRONG_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored: String = db::fetch_scalar!(
        &mut db,
        "SELECT password_hash FROM users WHERE username = $1",
        &username
    )
    .await
    .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert_eq!(
        app.login(&username, STRONG_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_disabled_account_cannot_log_in_and_is_told_nothing_more() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    db::execute!(
        &mut app.db().await,
        "UPDATE users SET disabled = true WHERE id = $1",
        user.id
    )
    .await
    .unwrap();
    let response = app.login(&user.username, &user.password).await;
    let body = assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["type"], "/problems/invalid-credentials");
}

#[tokio::test]
async fn the_profile_shows_the_callers_own_account() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let response = app.get("/api/v1/users/me", Some(&user.token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], user.id);
    assert_eq!(body["username"], user.username.as_str());
    assert_eq!(body["email"], format!("{}@example.com", user.username));
    assert!(body.get("password_hash").is_none());
}
