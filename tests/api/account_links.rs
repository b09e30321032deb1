//! Email verification and password reset, end to end: the tests read the mail the service
//! delivered (in development without `SMTP_URL`: `.eml` files in `MAIL_OUTBOX_DIR`, one
//! directory per test) and follow its link over HTTP, as a person would.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use filmvault::db;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    LOGS, STRONG_PASSWORD, TestApp, assert_problem, spawn_app_with, unique_username,
};

const NEW_PASSWORD: &str = "saffron-lantern-harbour-7";

/// An app whose mails land in a directory of its own, delivered at once.
struct MailApp {
    app: TestApp,
    outbox: TempDir,
}

async fn spawn_mail_app(overrides: &[(&str, &str)]) -> MailApp {
    let outbox = tempfile::tempdir().expect("a temporary directory");
    let dir = outbox.path().display().to_string();
    let mut vars = vec![
        ("MAIL_OUTBOX_DIR", dir.as_str()),
        ("MAIL_POLL_INTERVAL_MS", "20"),
    ];
    vars.extend_from_slice(overrides);
    MailApp {
        app: spawn_app_with(&vars).await,
        outbox,
    }
}

/// Every delivered mail, oldest first, as text with quoted-printable undone.
fn mails(outbox: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(outbox)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|raw| {
            raw.replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
        })
        .collect()
}

impl MailApp {
    fn matching(&self, to: &str, subject: &str) -> Vec<String> {
        let to_header = format!("To: {to}\r\n");
        mails(self.outbox.path())
            .into_iter()
            .filter(|mail| mail.contains(&to_header) && mail.contains(subject))
            .collect()
    }

    /// Waits (a few seconds at most) for the `nth` mail (from 1) to `to` whose subject holds
    /// `subject`.
    async fn mail(&self, to: &str, subject: &str, nth: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let matching = self.matching(to, subject);
            if matching.len() >= nth {
                return matching[nth - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail #{nth} \"{subject}\" to {to}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many mails to `to` whose subject holds `subject`, once background work is done.
    async fn count_after_a_while(&self, to: &str, subject: &str) -> usize {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.matching(to, subject).len()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.app.post_json(path, &body, None).await
    }

    async fn verify(&self, token: &str) -> reqwest::Response {
        self.post("/api/v1/auth/verify-email", json!({ "token": token }))
            .await
    }

    async fn confirm_reset(&self, token: &str, new_password: &str) -> reqwest::Response {
        self.post(
            "/api/v1/auth/password-reset/confirm",
            json!({ "token": token, "new_password": new_password }),
        )
        .await
    }
}

/// The token of the link in `mail`, after `#/{page}?token=`.
fn token_in(mail: &str, page: &str) -> String {
    let marker = format!("/static/index.html#/{page}?token=");
    let start = mail.find(&marker).expect("a link in the mail") + marker.len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

const VERIFY_SUBJECT: &str = "Confirm your email address";
const RESET_SUBJECT: &str = "Reset your password";
const CHANGED_SUBJECT: &str = "password was changed";
const ATTEMPT_SUBJECT: &str = "Somebody tried to register with your address";

/// Registers `username` with `{username}@example.com`; returns the address.
async fn register(mail_app: &MailApp, username: &str) -> String {
    let response = mail_app.app.register(username, STRONG_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    format!("{username}@example.com")
}

fn assert_type(problem: &Value, suffix: &str) {
    let kind = problem["type"].as_str().unwrap_or_default();
    assert!(kind.ends_with(suffix), "{problem}");
}

#[tokio::test]
async fn login_waits_for_the_verification_link_which_works_once() {
    let mail_app = spawn_mail_app(&[("REQUIRE_EMAIL_VERIFICATION", "true")]).await;
    let app = &mail_app.app;
    let username = unique_username("verify");
    let email = register(&mail_app, &username).await;

    let wrong = app.login(&username, "not-the-password-at-all").await;
    let wrong = assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    assert_type(&wrong, "/invalid-credentials");
    let unverified = app.login(&username, STRONG_PASSWORD).await;
    let unverified = assert_problem(unverified, StatusCode::FORBIDDEN).await;
    assert_type(&unverified, "/email-not-verified");

    let mail = mail_app.mail(&email, VERIFY_SUBJECT, 1).await;
    let token = token_in(&mail, "verify-email");
    assert_eq!(
        mail_app.verify(&token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.login(&username, STRONG_PASSWORD).await.status(),
        StatusCode::OK
    );
    let reused = assert_problem(mail_app.verify(&token).await, StatusCode::BAD_REQUEST).await;
    assert_type(&reused, "/invalid-link-token");

    let audit = app.wait_for_audit("user.email_verify", 2).await;
    let outcomes: Vec<&str> = audit.iter().map(|row| row.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"success") && outcomes.contains(&"failure"),
        "{outcomes:?}"
    );
    assert!(
        !LOGS.contents().contains(&token),
        "the token reached the log"
    );
}

#[tokio::test]
async fn without_required_verification_an_unverified_account_logs_in() {
    let mail_app = spawn_mail_app(&[("REQUIRE_EMAIL_VERIFICATION", "false")]).await;
    let username = unique_username("relaxed");
    let email = register(&mail_app, &username).await;
    mail_app.mail(&email, VERIFY_SUBJECT, 1).await;
    assert_eq!(
        mail_app
            .app
            .login(&username, STRONG_PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_made_up_or_expired_verification_token_is_refused() {
    let mail_app = spawn_mail_app(&[("REQUIRE_EMAIL_VERIFICATION", "true")]).await;
    let username = unique_username("expire");
    let email = register(&mail_app, &username).await;
    let token = token_in(
        &mail_app.mail(&email, VERIFY_SUBJECT, 1).await,
        "verify-email",
    );

    let made_up = "A".repeat(token.len());
    assert_problem(mail_app.verify(&made_up).await, StatusCode::BAD_REQUEST).await;
    expire_every_token(&mail_app.app).await;
    let expired = assert_problem(mail_app.verify(&token).await, StatusCode::BAD_REQUEST).await;
    assert_type(&expired, "/invalid-link-token");
    let still = mail_app.app.login(&username, STRONG_PASSWORD).await;
    assert_problem(still, StatusCode::FORBIDDEN).await;
}

async fn expire_every_token(app: &TestApp) {
    db::execute!(
        &mut app.db().await,
        "UPDATE account_tokens SET expires_at = created_at - 1"
    )
    .await
    .unwrap();
}

/// A taken address is told to its owner, by mail, and to nobody else.
#[tokio::test]
async fn the_owner_of_a_taken_address_gets_a_notice_instead_of_an_account() {
    let mail_app = spawn_mail_app(&[]).await;
    let username = unique_username("owner");
    let email = register(&mail_app, &username).await;
    let again = mail_app
        .post(
            "/api/v1/auth/register",
            json!({ "username": unique_username("intruder"), "email": email,
                "password": STRONG_PASSWORD }),
        )
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let notice = mail_app.mail(&email, ATTEMPT_SUBJECT, 1).await;
    assert!(!notice.contains("token="), "a notice carries no link");
    assert_eq!(
        mail_app.count_after_a_while(&email, VERIFY_SUBJECT).await,
        1
    );
}

async fn request_link(mail_app: &MailApp, path: &str, email: &str) -> (StatusCode, String) {
    let response = mail_app.post(path, json!({ "email": email })).await;
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn asking_for_a_link_answers_alike_for_every_address() {
    let mail_app = spawn_mail_app(&[]).await;
    let email = register(&mail_app, &unique_username("alike")).await;
    for path in [
        "/api/v1/auth/verify-email/resend",
        "/api/v1/auth/password-reset",
    ] {
        let known = request_link(&mail_app, path, &email).await;
        let unknown = request_link(&mail_app, path, "nobody.here@example.com").await;
        assert_eq!(known.0, StatusCode::ACCEPTED, "{path}");
        assert_eq!(known, unknown, "{path}");
    }
    let invalid = mail_app
        .post(
            "/api/v1/auth/password-reset",
            json!({ "email": "not-an-email" }),
        )
        .await;
    assert_problem(invalid, StatusCode::UNPROCESSABLE_ENTITY).await;
}

/// The work happens after the answer: a known address costs the client no more time than
/// an unknown one (a generous bound; the medians of alternate requests).
#[tokio::test]
async fn a_reset_request_takes_as_long_for_a_known_address_as_for_an_unknown_one() {
    let mail_app = spawn_mail_app(&[]).await;
    let mut emails = Vec::new();
    for _ in 0..5 {
        emails.push(register(&mail_app, &unique_username("timing")).await);
    }
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    for (i, email) in emails.iter().enumerate() {
        let unknown = format!("unknown{i}@example.com");
        for (address, times) in [(email, &mut known_times), (&unknown, &mut unknown_times)] {
            let start = Instant::now();
            let (status, _) = request_link(&mail_app, "/api/v1/auth/password-reset", address).await;
            times.push(start.elapsed());
            assert_eq!(status, StatusCode::ACCEPTED);
        }
    }
    known_times.sort();
    unknown_times.sort();
    let (known, unknown) = (known_times[2], unknown_times[2]);
    let slack = Duration::from_millis(20);
    assert!(
        known < unknown * 3 + slack && unknown < known * 3 + slack,
        "known {known:?} vs unknown {unknown:?}"
    );
}

#[tokio::test]
async fn a_resent_link_supersedes_the_old_one_and_an_inbox_gets_at_most_three_an_hour() {
    let mail_app = spawn_mail_app(&[("REQUIRE_EMAIL_VERIFICATION", "true")]).await;
    let username = unique_username("resend");
    let email = register(&mail_app, &username).await;
    let first = token_in(
        &mail_app.mail(&email, VERIFY_SUBJECT, 1).await,
        "verify-email",
    );
    let resend = "/api/v1/auth/verify-email/resend";
    for _ in 0..4 {
        assert_eq!(
            request_link(&mail_app, resend, &email).await.0,
            StatusCode::ACCEPTED
        );
    }
    // The registration's mail and two more: the fourth and fifth asks are dropped.
    mail_app.mail(&email, VERIFY_SUBJECT, 3).await;
    assert_eq!(
        mail_app.count_after_a_while(&email, VERIFY_SUBJECT).await,
        3
    );
    let denied = mail_app
        .app
        .wait_for_audit("user.email_verification_resend", 4)
        .await;
    assert_eq!(
        denied.iter().filter(|row| row.outcome == "denied").count(),
        2,
        "two asks over the budget"
    );

    assert_problem(mail_app.verify(&first).await, StatusCode::BAD_REQUEST).await;
    let newest = token_in(
        &mail_app.mail(&email, VERIFY_SUBJECT, 3).await,
        "verify-email",
    );
    assert_eq!(
        mail_app.verify(&newest).await.status(),
        StatusCode::NO_CONTENT
    );
    // A verified account is sent no more links.
    request_link(&mail_app, resend, &email).await;
    let after = mail_app
        .app
        .wait_for_audit("user.email_verification_resend", 5)
        .await;
    assert!(
        after.iter().any(|row| row.outcome == "failure"),
        "{}",
        after.len()
    );
}

#[tokio::test]
async fn asking_for_links_is_limited_per_client() {
    let mail_app = spawn_mail_app(&[("RATE_LIMIT_AUTH", "2/min")]).await;
    let path = "/api/v1/auth/password-reset";
    for _ in 0..2 {
        let (status, _) = request_link(&mail_app, path, "anyone@example.com").await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let response = mail_app
        .post(path, json!({ "email": "anyone@example.com" }))
        .await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
}

/// Registers, logs in and asks for a reset link; returns the user's address, session tokens
/// and the link's token.
async fn user_with_reset_link(mail_app: &MailApp) -> (String, String, (String, String), String) {
    let username = unique_username("reset");
    let email = register(mail_app, &username).await;
    let session = mail_app.app.token_pair(&username, STRONG_PASSWORD).await;
    let (status, _) = request_link(mail_app, "/api/v1/auth/password-reset", &email).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = token_in(
        &mail_app.mail(&email, RESET_SUBJECT, 1).await,
        "reset-password",
    );
    (username, email, session, token)
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_once_and_ends_every_session() {
    let mail_app = spawn_mail_app(&[]).await;
    let app = &mail_app.app;
    let (username, email, (access, refresh), token) = user_with_reset_link(&mail_app).await;

    // A password that breaks the rules: 422, and the link still works.
    let weak = mail_app.confirm_reset(&token, "password1234").await;
    assert_problem(weak, StatusCode::UNPROCESSABLE_ENTITY).await;
    let personal = format!("violet-{}-kettle", username.to_uppercase());
    let refused = mail_app.confirm_reset(&token, &personal).await;
    let refused = assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(refused["errors"][0]["code"], "contains_username");
    let done = mail_app.confirm_reset(&token, NEW_PASSWORD).await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);

    assert_problem(
        app.get("/api/v1/users/me", Some(&access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(app.refresh(&refresh).await, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        app.login(&username, STRONG_PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.login(&username, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    mail_app.mail(&email, CHANGED_SUBJECT, 1).await;

    let reused = mail_app
        .confirm_reset(&token, "another-fine-passphrase")
        .await;
    let reused = assert_problem(reused, StatusCode::BAD_REQUEST).await;
    assert_type(&reused, "/invalid-link-token");
    assert_eq!(
        app.login(&username, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );

    let audit = app.wait_for_audit("user.password_reset", 2).await;
    let outcomes: Vec<&str> = audit.iter().map(|row| row.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"success") && outcomes.contains(&"failure"),
        "{outcomes:?}"
    );
    app.wait_for_audit("user.password_reset_request", 1).await;
    assert!(
        !LOGS.contents().contains(&token),
        "the token reached the log"
    );
}

#[tokio::test]
async fn an_expired_or_made_up_reset_link_changes_nothing() {
    let mail_app = spawn_mail_app(&[]).await;
    let (username, _, _, token) = user_with_reset_link(&mail_app).await;
    let made_up = "B".repeat(token.len());
    assert_problem(
        mail_app.confirm_reset(&made_up, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expire_every_token(&mail_app.app).await;
    assert_problem(
        mail_app.confirm_reset(&token, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        mail_app
            .app
            .login(&username, STRONG_PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

/// A link mailed before the password changed another way (here: the user changed it while
/// logged in) opens nothing: whoever reads that old mail gets no say over the new password.
#[tokio::test]
async fn a_reset_link_dies_when_the_password_changes_another_way() {
    let mail_app = spawn_mail_app(&[]).await;
    let app = &mail_app.app;
    let (username, _, (access, _), token) = user_with_reset_link(&mail_app).await;
    let changed = app
        .put_json(
            "/api/v1/users/me/password",
            &json!({ "current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD }),
            Some(&access),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);

    let late = mail_app
        .confirm_reset(&token, "another-fine-passphrase")
        .await;
    assert_problem(late, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        app.login(&username, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

/// Only the newest reset link works.
#[tokio::test]
async fn a_newer_reset_link_supersedes_the_older_one() {
    let mail_app = spawn_mail_app(&[]).await;
    let (username, email, _, first) = user_with_reset_link(&mail_app).await;
    request_link(&mail_app, "/api/v1/auth/password-reset", &email).await;
    let second = token_in(
        &mail_app.mail(&email, RESET_SUBJECT, 2).await,
        "reset-password",
    );
    assert_problem(
        mail_app.confirm_reset(&first, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        mail_app.confirm_reset(&second, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        mail_app.app.login(&username, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}
