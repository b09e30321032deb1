//! Mail through the outbox, over a real SMTP server (`smtp_sink`): security notices written
//! with the change that causes them, delivered once, retried while the server is away,
//! dead-lettered for administrators after the last attempt; `.eml` files without SMTP.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{
        LOGS, STRONG_PASSWORD, TestApp, TestDatabase, TestUser, spawn_app_on, spawn_app_with,
    },
    smtp_sink::SmtpSink,
};

const NEW_PASSWORD: &str = "amber-lantern-harbor-77";
const PASSWORD_NOTICE: &str = "Subject: Your filmvault password was changed";
const KEY_NOTICE: &str = "Subject: A new API key was created for your filmvault account";

/// Mail settings that make a test quick: a worker that polls often, short backoff.
fn quick_mail<'a>(smtp_url: &'a str, max_attempts: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("SMTP_URL", smtp_url),
        ("MAIL_POLL_INTERVAL_MS", "20"),
        ("MAIL_RETRY_BASE_MS", "50"),
        ("MAIL_MAX_ATTEMPTS", max_attempts),
    ]
}

fn address(user: &TestUser) -> String {
    format!("{}@example.com", user.username)
}

async fn create_key(app: &TestApp, user: &TestUser, name: &str) {
    let response = app
        .post_json(
            "/api/v1/users/me/api-keys",
            &json!({ "name": name, "scopes": ["read"] }),
            Some(&user.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn mails(app: &TestApp, admin: &TestUser, state: &str) -> Value {
    let response = app
        .get(
            &format!("/api/v1/admin/mails?state={state}"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("a JSON body")
}

/// The listing of `state` once `done` holds for it, within 15 s.
async fn wait_for_mails(
    app: &TestApp,
    admin: &TestUser,
    state: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listing = mails(app, admin, state).await;
        if done(&listing) {
            return listing;
        }
        assert!(
            Instant::now() < deadline,
            "mails never got there: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_password_change_mails_one_notice_to_the_owner_and_logs_none_of_it() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app_with(&quick_mail(&sink.url(), "5")).await;
    let user = app.new_user().await;
    let response = app
        .put_json(
            "/api/v1/users/me/password",
            &json!({ "current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD }),
            Some(&user.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    sink.wait_for(1, Duration::from_secs(15)).await;
    // A second copy would have time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notices: Vec<String> = sink
        .messages()
        .into_iter()
        .filter(|message| message.contains(PASSWORD_NOTICE))
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = &notices[0];
    assert!(
        notice.contains(&format!("X-Envelope-To: {}\r\n", address(&user))),
        "{notice}"
    );
    assert!(
        notice.contains(&format!("To: {}\r\n", address(&user))),
        "{notice}"
    );
    assert!(
        notice.contains(&format!("Hello {}", user.username)),
        "{notice}"
    );
    assert!(
        notice.contains("the password of your filmvault account was changed"),
        "{notice}"
    );

    let logs = LOGS.contents();
    assert!(!logs.contains("password of your filmvault account was changed"));
    assert!(!logs.contains(&address(&user)));
}

#[tokio::test]
async fn an_unreachable_server_gets_retries_and_the_mail_when_it_is_back() {
    let Some(mut sink) = SmtpSink::start() else {
        return;
    };
    sink.stop();
    let app = spawn_app_with(&quick_mail(&sink.url(), "50")).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    create_key(&app, &user, "deploy script").await;

    let pending = wait_for_mails(&app, &admin, "pending", |listing| {
        listing["items"][0]["attempts"].as_i64() >= Some(2)
    })
    .await;
    let error = pending["items"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("SMTP"), "{pending}");
    assert!(sink.messages().is_empty());

    sink.restart();
    // The key's notice, and the registration's verification mail.
    let messages = sink.wait_for(2, Duration::from_secs(15)).await;
    let notice = messages.iter().find(|m| m.contains(KEY_NOTICE)).unwrap();
    assert!(notice.contains("\"deploy script\""), "{notice}");
    let sent = wait_for_mails(&app, &admin, "sent", |listing| listing["total"] == 2).await;
    let key_mail = sent["items"].as_array().unwrap().iter();
    let key_mail = key_mail
        .clone()
        .find(|m| m["kind"] == "api_key_created")
        .unwrap();
    assert!(key_mail["attempts"].as_i64() >= Some(3), "{sent}");
    assert_eq!(mails(&app, &admin, "pending").await["total"], 0);
}

#[tokio::test]
async fn a_mail_that_cannot_be_delivered_is_dead_lettered_and_only_admins_see_it() {
    // Nothing ever listens on this port.
    let sink = SmtpSink::stopped();
    let app = spawn_app_with(&quick_mail(&sink.url(), "3")).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    create_key(&app, &user, "nightly backup").await;

    // The registration's verification mail dies too.
    let dead = wait_for_mails(&app, &admin, "dead", |listing| listing["total"] == 2).await;
    let items = dead["items"].as_array().unwrap();
    let mail = items
        .iter()
        .find(|m| m["kind"] == "api_key_created")
        .unwrap();
    assert_eq!(mail["kind"], "api_key_created");
    assert_eq!(mail["state"], "dead");
    assert_eq!(mail["attempts"], 3);
    assert!(
        mail["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("SMTP")),
        "{mail}"
    );
    let shown = dead.to_string();
    assert!(
        !shown.contains(&address(&user)) && !shown.contains("nightly backup"),
        "{shown}"
    );

    // No attempt after the last one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mails(&app, &admin, "dead").await["items"][0]["attempts"], 3);
    let response = app
        .get("/api/v1/admin/mails?state=dead", Some(&user.token))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .get("/api/v1/admin/mails?state=lost", Some(&admin.token))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_mail_once() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let database = TestDatabase::create().await;
    let url = sink.url();
    let settings = quick_mail(&url, "5");
    let first = spawn_app_on(&database, &settings).await;
    let second = spawn_app_on(&database, &settings).await;
    let user = first.new_user().await;
    const MAILS: usize = 12;
    for n in 0..MAILS {
        let app = if n % 2 == 0 { &first } else { &second };
        create_key(app, &user, &format!("key number {n}")).await;
    }

    // And the registration's verification mail.
    sink.wait_for(MAILS + 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), MAILS + 1, "each mail once");
    for n in 0..MAILS {
        let name = format!("\"key number {n}\"");
        let copies = messages.iter().filter(|m| m.contains(&name)).count();
        assert_eq!(copies, 1, "{name}");
    }
}

#[tokio::test]
async fn without_smtp_mails_are_eml_files_only_the_service_user_can_read() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("outbox");
    let dir_setting = dir.display().to_string();
    let app = spawn_app_with(&[
        ("MAIL_OUTBOX_DIR", dir_setting.as_str()),
        ("MAIL_POLL_INTERVAL_MS", "20"),
    ])
    .await;
    let user = app.new_user().await;
    create_key(&app, &user, "laptop").await;

    let file = wait_for_eml(&dir).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    assert_eq!(mode(&dir), 0o700);
    let message = std::fs::read_to_string(&file).unwrap();
    assert!(message.contains(KEY_NOTICE), "{message}");
    assert!(
        message.contains(&format!("To: {}\r\n", address(&user))),
        "{message}"
    );
    assert!(
        LOGS.contents().contains(&dir_setting),
        "the log says where mails go"
    );
}

async fn wait_for_eml(dir: &Path) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            // Not the registration's verification mail.
            .find(|path| path.to_string_lossy().ends_with("api_key_created.eml"));
        if let Some(file) = found {
            return file;
        }
        assert!(
            Instant::now() < deadline,
            "no .eml file in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
