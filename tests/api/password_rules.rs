//! The password rules (ASVS 5.0 V6.2) over HTTP: each refusal names its rule by a code and
//! never echoes the password, and nothing is created or changed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{STRONG_PASSWORD, TestApp, assert_problem, spawn_app, unique_username};

async fn register(app: &TestApp, username: &str, email: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/register",
        &json!({ "username": username, "email": email, "password": password }),
        None,
    )
    .await
}

/// A 422 for `field` with `code`, whose body does not contain `password`.
async fn assert_refused(response: reqwest::Response, field: &str, code: &str, password: &str) {
    let problem: Value = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    assert_eq!(problem["errors"][0]["code"], code, "{problem}");
    assert!(
        !problem.to_string().contains(password),
        "the password is echoed: {problem}"
    );
}

#[tokio::test]
async fn registration_refuses_each_rule_by_its_code_and_accepts_a_strong_password() {
    let app = spawn_app().await;
    let username = unique_username("rules");
    let email = "jean.dupont@example.com";
    let cases = [
        ("short-pw1", "length"),
        ("Password1234", "common"),
        (
            &*format!("Violet-{}-Kettle", username.to_uppercase()),
            "contains_username",
        ),
        ("violet-JEAN.DUPONT-kettle", "contains_email"),
        ("abcdefabcdefabcdef", "guessable"),
    ];
    for (password, code) in cases {
        let response = register(&app, &username, email, password).await;
        assert_refused(response, "password", code, password).await;
        let login = app.login(&username, password).await;
        assert_eq!(
            login.status(),
            StatusCode::UNAUTHORIZED,
            "created: {password}"
        );
    }
    let accepted = register(&app, &username, email, STRONG_PASSWORD).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.login(&username, STRONG_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_change_to_a_personal_or_guessable_password_changes_nothing() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let personal = format!("my-{}-password-is-long", user.username);
    for (new_password, code) in [
        (personal.as_str(), "contains_username"),
        ("qwertyuiop987654", "guessable"),
    ] {
        let response = app
            .put_json(
                "/api/v1/users/me/password",
                &json!({ "current_password": user.password, "new_password": new_password }),
                Some(&user.token),
            )
            .await;
        assert_refused(response, "new_password", code, new_password).await;
    }
    assert_eq!(
        app.login(&user.username, &user.password).await.status(),
        StatusCode::OK,
        "the old password still logs in"
    );
    assert_eq!(
        app.get("/api/v1/users/me", Some(&user.token))
            .await
            .status(),
        StatusCode::OK,
        "the session lives on"
    );
}
