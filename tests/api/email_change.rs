//! Changing the email address, the new-sign-in and second-factor notices, and what happens
//! to the mails of a deleted account: over real HTTP, with the mails read from a real SMTP server
//! (`smtp_sink`) as their recipients would read them.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{LOGS, STRONG_PASSWORD, TestApp, TestUser, assert_problem, spawn_app_with},
    smtp_sink::SmtpSink,
};

const CONFIRM_SUBJECT: &str = "Subject: Confirm your new email address";
const REQUESTED_SUBJECT: &str = "Subject: A change of your filmvault email address was requested";
const CHANGED_SUBJECT: &str = "Subject: Your filmvault email address was changed";
const ATTEMPT_SUBJECT: &str = "Subject: Somebody tried to move an account to your address";
const VERIFY_SUBJECT: &str = "Subject: Confirm your email address";
const SIGN_IN_SUBJECT: &str = "Subject: New sign-in to your filmvault account";
const MFA_ON_SUBJECT: &str = "Subject: Two-step sign-in was turned on for your filmvault account";
const MFA_OFF_SUBJECT: &str = "Subject: Two-step sign-in was turned off for your filmvault account";
const RECOVERY_CODE_SUBJECT: &str = "Subject: A recovery code of your filmvault account was used";
const NEW_PASSWORD: &str = "copper-meadow-lantern-42";

/// An app that delivers its mails to `sink` at once.
async fn spawn_mail_app(sink: &SmtpSink) -> TestApp {
    spawn_app_with(&[
        ("SMTP_URL", sink.url().as_str()),
        ("MAIL_POLL_INTERVAL_MS", "20"),
        ("MAIL_RETRY_BASE_MS", "50"),
    ])
    .await
}

fn address(user: &TestUser) -> String {
    format!("{}@example.com", user.username)
}

/// A received message with its quoted-printable soft breaks and `=3D` undone.
fn readable(message: String) -> String {
    message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The messages to `to` with `subject` received so far.
fn received(sink: &SmtpSink, to: &str, subject: &str) -> Vec<String> {
    let envelope = format!("X-Envelope-To: {to}\r\n");
    sink.messages()
        .into_iter()
        .map(readable)
        .filter(|message| message.contains(&envelope) && message.contains(subject))
        .collect()
}

/// Waits (10 s at most) for the `nth` message (from 1) to `to` with `subject`.
async fn mail(sink: &SmtpSink, to: &str, subject: &str, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages = received(sink, to, subject);
        if messages.len() >= nth {
            return messages[nth - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no message #{nth} \"{subject}\" to {to}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How many messages to `to` with `subject` arrived, once the worker had time for more.
async fn count_after_a_while(sink: &SmtpSink, to: &str, subject: &str) -> usize {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    received(sink, to, subject).len()
}

/// The token of the link in `message`, after `#/{page}?token=`.
fn token_in(message: &str, page: &str) -> String {
    let marker = format!("/static/index.html#/{page}?token=");
    let start = message.find(&marker).expect("a link in the mail") + marker.len();
    message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn request_change(
    app: &TestApp,
    user: &TestUser,
    new_email: &str,
    password: &str,
) -> reqwest::Response {
    app.put_json(
        "/api/v1/users/me/email",
        &json!({ "new_email": new_email, "password": password }),
        Some(&user.token),
    )
    .await
}

async fn confirm(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/confirm-email",
        &json!({ "token": token }),
        None,
    )
    .await
}

async fn email_of(app: &TestApp, user: &TestUser) -> String {
    let response = app.get("/api/v1/users/me", Some(&user.token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let profile: Value = response.json().await.expect("a JSON body");
    profile["email"].as_str().expect("an email").to_owned()
}

/// Asks for a change to `new_email` and returns the token mailed there (the `nth` link).
async fn change_token(
    app: &TestApp,
    sink: &SmtpSink,
    user: &TestUser,
    new_email: &str,
    nth: usize,
) -> String {
    let response = request_change(app, user, new_email, &user.password).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    token_in(
        &mail(sink, new_email, CONFIRM_SUBJECT, nth).await,
        "confirm-email",
    )
}

#[tokio::test]
async fn the_new_address_counts_only_once_confirmed_and_both_addresses_are_told() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_mail_app(&sink).await;
    let user = app.new_user().await;
    let (old, new) = (address(&user), format!("new.{}@example.org", user.username));

    let response = request_change(&app, &user, &new, STRONG_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let link_mail = mail(&sink, &new, CONFIRM_SUBJECT, 1).await;
    let token = token_in(&link_mail, "confirm-email");
    let requested = mail(&sink, &old, REQUESTED_SUBJECT, 1).await;
    assert!(!requested.contains(&token), "the old address gets no link");
    assert!(!requested.contains(&new), "nor the new address");

    // Until the link is opened, the account keeps its address, for everything.
    assert_eq!(email_of(&app, &user).await, old);
    app.assert_email_taken(&old).await;

    assert_eq!(confirm(&app, &token).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(email_of(&app, &user).await, new);
    let changed = mail(&sink, &old, CHANGED_SUBJECT, 1).await;
    assert!(
        changed.contains(&format!("Hello {}", user.username)),
        "{changed}"
    );
    // The link works once; the old address is free, the new one taken.
    let again = assert_problem(confirm(&app, &token).await, StatusCode::BAD_REQUEST).await;
    assert!(
        again["type"]
            .as_str()
            .unwrap()
            .ends_with("/invalid-link-token"),
        "{again}"
    );
    app.assert_email_taken(&new).await;
    let newcomer = crate::helpers::unique_username("newcomer");
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({ "username": newcomer, "email": old, "password": STRONG_PASSWORD }),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.login(&newcomer, STRONG_PASSWORD).await.status(),
        StatusCode::OK
    );

    let requests = app.wait_for_audit("user.email_change_request", 1).await;
    assert_eq!(requests[0].outcome, "success");
    assert_eq!(requests[0].actor_id, Some(user.id));
    let changes = app.wait_for_audit("user.email_change", 2).await;
    let outcomes: Vec<&str> = changes.iter().map(|row| row.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"success") && outcomes.contains(&"failure"),
        "{outcomes:?}"
    );

    let logs = LOGS.contents();
    assert!(!logs.contains(&token), "a mailed token reached the log");
    assert!(
        !logs.contains(&new) && !logs.contains(&old),
        "an address reached the log"
    );
}

#[tokio::test]
async fn a_taken_address_gets_the_same_answer_and_its_owner_a_notice_instead_of_a_link() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_mail_app(&sink).await;
    let (user, holder) = (app.new_user().await, app.new_user().await);
    let free = format!("free.{}@example.org", user.username);

    let to_free = request_change(&app, &user, &free, STRONG_PASSWORD).await;
    assert_eq!(to_free.status(), StatusCode::ACCEPTED);
    let to_free: Value = to_free.json().await.expect("a JSON body");
    // The holder's address, typed in another case: still the holder's.
    let taken = address(&holder)
        .to_uppercase()
        .replace("EXAMPLE.COM", "example.com");
    let to_taken = request_change(&app, &user, &taken, STRONG_PASSWORD).await;
    assert_eq!(to_taken.status(), StatusCode::ACCEPTED);
    let to_taken: Value = to_taken.json().await.expect("a JSON body");
    assert_eq!(
        to_free, to_taken,
        "the answer does not tell a taken address"
    );

    // The requester's own address hears of both requests alike.
    mail(&sink, &address(&user), REQUESTED_SUBJECT, 2).await;
    mail(&sink, &address(&holder), ATTEMPT_SUBJECT, 1).await;
    assert_eq!(count_after_a_while(&sink, &taken, CONFIRM_SUBJECT).await, 0);
    assert_eq!(received(&sink, &address(&holder), CONFIRM_SUBJECT).len(), 0);
    assert_eq!(email_of(&app, &user).await, address(&user));
    assert_eq!(email_of(&app, &holder).await, address(&holder));

    let requests = app.wait_for_audit("user.email_change_request", 2).await;
    let taken_row = requests
        .iter()
        .find(|row| row.outcome == "failure")
        .expect("a failure");
    assert!(taken_row.reason.as_deref().unwrap_or("").contains("taken"));
}

#[tokio::test]
async fn a_wrong_password_changes_nothing_and_mails_nothing() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_mail_app(&sink).await;
    let user = app.new_user().await;
    let new = format!("new.{}@example.org", user.username);

    let response = request_change(&app, &user, &new, "not-the-password-at-all").await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = request_change(&app, &user, "not an address", STRONG_PASSWORD).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = request_change(&app, &user, &address(&user), STRONG_PASSWORD).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;

    assert_eq!(count_after_a_while(&sink, &new, CONFIRM_SUBJECT).await, 0);
    assert_eq!(received(&sink, &address(&user), REQUESTED_SUBJECT).len(), 0);
    assert_eq!(email_of(&app, &user).await, address(&user));
    let rows = app.wait_for_audit("user.email_change_request", 1).await;
    assert_eq!(rows[0].outcome, "failure");
}

#[tokio::test]
async fn a_link_works_only_for_the_address_and_the_request_it_was_mailed_for() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_mail_app(&sink).await;
    let user = app.new_user().await;
    let old = address(&user);
    let verify_old = token_in(&mail(&sink, &old, VERIFY_SUBJECT, 1).await, "verify-email");
    let (first, second) = (
        format!("first.{}@example.org", user.username),
        format!("second.{}@example.org", user.username),
    );

    // A newer request supersedes the older one.
    let first_token = change_token(&app, &sink, &user, &first, 1).await;
    let second_token = change_token(&app, &sink, &user, &second, 1).await;
    assert_problem(confirm(&app, &first_token).await, StatusCode::BAD_REQUEST).await;
    // A change token is no verification token, nor the reverse.
    assert_problem(verify(&app, &second_token).await, StatusCode::BAD_REQUEST).await;
    assert_problem(confirm(&app, &verify_old).await, StatusCode::BAD_REQUEST).await;

    assert_eq!(
        confirm(&app, &second_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(email_of(&app, &user).await, second);
    // The link mailed to the old address verifies nothing now.
    assert_problem(verify(&app, &verify_old).await, StatusCode::BAD_REQUEST).await;

    // A password change cancels a pending change.
    let third = format!("third.{}@example.org", user.username);
    let third_token = change_token(&app, &sink, &user, &third, 1).await;
    let response = app
        .put_json(
            "/api/v1/users/me/password",
            &json!({ "current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD }),
            Some(&user.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(confirm(&app, &third_token).await, StatusCode::BAD_REQUEST).await;
    let token = app.access_token(&user.username, NEW_PASSWORD).await;
    let profile: Value = app
        .get("/api/v1/users/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["email"], second.as_str());
}

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/verify-email",
        &json!({ "token": token }),
        None,
    )
    .await
}

/// Logs `user` in with `user_agent`; returns the access token.
async fn login_with_agent(app: &TestApp, user: &TestUser, user_agent: &str) -> String {
    let response = app
        .request(Method::POST, "/api/v1/auth/login")
        .header("user-agent", user_agent)
        .json(&json!({ "username": user.username, "password": user.password }))
        .send()
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a JSON body");
    body["access_token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn a_sign_in_from_a_new_client_is_told_once_and_a_known_one_never() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_mail_app(&sink).await;
    // Registered, then signed in for the first time: nothing to tell.
    let user = app.new_user().await;
    let to = address(&user);
    app.access_token(&user.username, STRONG_PASSWORD).await;
    assert_eq!(count_after_a_while(&sink, &to, SIGN_IN_SUBJECT).await, 0);

    login_with_agent(&app, &user, "FilmvaultPhone/2.1 (test)").await;
    let notice = mail(&sink, &to, SIGN_IN_SUBJECT, 1).await;
    assert!(notice.contains("FilmvaultPhone/2.1 (test)"), "{notice}");
    assert!(notice.contains("127.0.0.1"), "{notice}");
    login_with_agent(&app, &user, "FilmvaultPhone/2.1 (test)").await;
    app.access_token(&user.username, STRONG_PASSWORD).await;
    assert_eq!(count_after_a_while(&sink, &to, SIGN_IN_SUBJECT).await, 1);

    login_with_agent(&app, &user, "FilmvaultTablet/1.0").await;
    mail(&sink, &to, SIGN_IN_SUBJECT, 2).await;
    assert_eq!(count_after_a_while(&sink, &to, SIGN_IN_SUBJECT).await, 2);
}

/// Turning the second factor on or off is told to the account's address, once each: a thief
/// who turns it off, or on to lock the owner out, cannot do it unnoticed.
#[tokio::test]
async fn turning_mfa_on_and_off_is_told_to_the_owner_once_each() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_mail_app(&sink).await;
    let (user, authenticator, _) = crate::mfa::user_with_mfa(&app).await;
    let to = address(&user);
    let on = mail(&sink, &to, MFA_ON_SUBJECT, 1).await;
    assert!(on.contains(&format!("Hello {}", user.username)), "{on}");
    assert!(on.contains("was turned on"), "{on}");
    assert!(received(&sink, &to, MFA_OFF_SUBJECT).is_empty());

    let off = crate::mfa::turn_off(
        &app,
        &user.token,
        &user.password,
        &authenticator.code(0).await,
    )
    .await;
    assert_eq!(off.status(), StatusCode::NO_CONTENT);
    let off = mail(&sink, &to, MFA_OFF_SUBJECT, 1).await;
    assert!(off.contains("the password alone signs in"), "{off}");
    assert_eq!(count_after_a_while(&sink, &to, MFA_OFF_SUBJECT).await, 1);
    assert_eq!(received(&sink, &to, MFA_ON_SUBJECT).len(), 1);
}

/// How many mails wait in the outbox, as an administrator sees it.
async fn pending_mails(app: &TestApp, admin_token: &str) -> i64 {
    let response = app
        .get("/api/v1/admin/mails?state=pending", Some(admin_token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let listing: Value = response.json().await.expect("a JSON body");
    listing["total"].as_i64().expect("a total")
}

#[tokio::test]
async fn deleting_an_account_discards_its_unsent_mails() {
    let Some(mut sink) = SmtpSink::start() else {
        return;
    };
    // The server is down: the account's mails wait in the outbox.
    sink.stop();
    let app = spawn_app_with(&[
        ("SMTP_URL", sink.url().as_str()),
        ("MAIL_POLL_INTERVAL_MS", "20"),
        ("MAIL_RETRY_BASE_MS", "300"),
        ("MAIL_MAX_ATTEMPTS", "50"),
    ])
    .await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    app.create_api_key(&user.token, &["read"]).await;
    // Each user's verification link, and the user's API-key notice.
    assert_eq!(pending_mails(&app, &admin.token).await, 3);

    let response = app
        .request(Method::DELETE, "/api/v1/users/me")
        .bearer(&user.token)
        .json(&json!({ "password": STRONG_PASSWORD }))
        .send()
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        pending_mails(&app, &admin.token).await,
        1,
        "only the other user's mail is left"
    );

    // Back up: the other user's mail arrives, none of the deleted account's.
    sink.restart();
    mail(&sink, &address(&other), VERIFY_SUBJECT, 1).await;
    assert_eq!(
        count_after_a_while(&sink, &address(&user), "Subject:").await,
        0
    );
}

/// A login with a recovery code instead of the authenticator is told to the account's address,
/// with how many codes are left: someone who has the password and found the codes cannot
/// sign in unnoticed. A login with the authenticator's code tells nothing.
#[tokio::test]
async fn a_login_with_a_recovery_code_is_told_to_the_owner() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_mail_app(&sink).await;
    let (user, authenticator, codes) = crate::mfa::user_with_mfa(&app).await;
    let to = address(&user);
    let token = crate::mfa::mfa_token(&app, &user).await;
    let by_app = crate::mfa::login_mfa(&app, &token, &authenticator.code(0).await).await;
    assert_eq!(by_app.status(), StatusCode::OK);
    assert_eq!(
        count_after_a_while(&sink, &to, RECOVERY_CODE_SUBJECT).await,
        0
    );

    let token = crate::mfa::mfa_token(&app, &user).await;
    let by_code = crate::mfa::login_mfa(&app, &token, &codes[0]).await;
    assert_eq!(by_code.status(), StatusCode::OK);
    let notice = mail(&sink, &to, RECOVERY_CODE_SUBJECT, 1).await;
    assert!(
        notice.contains(&format!("Hello {}", user.username)),
        "{notice}"
    );
    assert!(
        notice.contains("used at ") && notice.contains(" in place of the authenticator app's code"),
        "{notice}"
    );
    assert!(notice.contains("9 of them are left"), "{notice}");
    assert!(
        !notice.contains(&codes[0]),
        "the code itself is never mailed: {notice}"
    );
    assert_eq!(
        count_after_a_while(&sink, &to, RECOVERY_CODE_SUBJECT).await,
        1
    );
}
