//! Health, readiness, metrics, suspicious logins and log files.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
};

use reqwest::StatusCode;

use crate::helpers::{TestApp, TestDatabase, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/health/ready", None).await.status(),
        StatusCode::OK
    );
    app.database.remove().await;
    let response = app.get("/health/ready", None).await;
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "/problems/not-ready");
    assert_eq!(
        app.get("/health/live", None).await.status(),
        StatusCode::OK,
        "still alive"
    );
}

pub(crate) fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

pub(crate) async fn metrics_as(app: &TestApp, token: &str) -> String {
    let response = app.get("/metrics", Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_are_for_admins_and_count_a_429_once_one_happens() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1/min")]).await;
    let admin = app.new_admin().await; // uses the one login the limit allows
    let user_token = {
        let response = app
            .register("plain_user", "violet-kettle-umbrella-42")
            .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        admin.token.clone()
    };
    let before = metrics_as(&app, &user_token).await;
    let limited_before = sample(&before, "http_denied_total{status=\"429\"}");

    let response = app.login(&admin.username, &admin.password).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    let after = metrics_as(&app, &admin.token).await;
    assert!(sample(&after, "http_denied_total{status=\"429\"}") >= limited_before + 1.0);
    assert!(after.contains("http_request_duration_seconds_bucket"));
    assert!(after.contains("route=\"/api/v1/auth/login\""));
    let pool = if app.database.is_postgres() {
        "postgres"
    } else {
        "writer"
    };
    assert!(after.contains(&format!("db_pool_connections{{pool=\"{pool}\"")));

    assert_problem(app.get("/metrics", None).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_plain_user_may_not_read_metrics() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    assert_problem(
        app.get("/metrics", Some(&user.token)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn the_loopback_metrics_listener_needs_no_token() {
    let database = TestDatabase::create().await;
    let settings = filmvault::config::Settings::from_vars([
        ("APP_PORT", "0"),
        ("DATABASE_URL", database.url()),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("SEED_DEMO_DATA", "false"),
    ])
    .unwrap();
    let application = filmvault::startup::Application::build(settings)
        .await
        .unwrap();
    let port = application.metrics_port().expect("a metrics listener");
    tokio::spawn(application.run_until_stopped());
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("rate_limiter_keys"));
}

#[tokio::test]
async fn failures_for_one_username_from_many_ips_lock_it_and_raise_one_security_event() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("SUSPICIOUS_LOGIN_IPS_PER_USERNAME", "4"),
    ])
    .await;
    let victim = app.new_user().await;
    let bystander = app.new_user().await;
    for i in 1..=4 {
        let response = app
            .login_from(
                &format!("203.0.113.{i}"),
                &victim.username,
                "wrong-guess-1234",
            )
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = app
        .login_from("198.51.100.9", &victim.username, &victim.password)
        .await;
    assert!(locked.headers().contains_key("retry-after"));
    let body = assert_problem(locked, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        body["type"], "/problems/login-locked",
        "distinct from rate limiting"
    );
    assert_eq!(
        app.login_from("198.51.100.9", &bystander.username, &bystander.password)
            .await
            .status(),
        StatusCode::OK
    );

    let events = app.wait_for_audit("security.suspicious_login", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].target.as_deref(),
        Some(format!("username:{}", victim.username).as_str())
    );
}

#[tokio::test]
async fn failures_for_many_usernames_from_one_ip_block_that_ip() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("SUSPICIOUS_LOGIN_USERNAMES_PER_IP", "3"),
    ])
    .await;
    let user = app.new_user().await;
    for name in ["spray_a", "spray_b", "spray_c"] {
        app.login_from("192.0.2.66", name, "Summer2026-password")
            .await;
    }
    let blocked = app
        .login_from("192.0.2.66", &user.username, &user.password)
        .await;
    assert_problem(blocked, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        app.login_from("192.0.2.67", &user.username, &user.password)
            .await
            .status(),
        StatusCode::OK
    );
    let events = app.wait_for_audit("security.suspicious_login", 1).await;
    assert_eq!(events[0].target.as_deref(), Some("ip:192.0.2.66"));
}

/// The real binary, as an operator runs it: LOG_FILE gets a private file with the request
/// lines and without the secrets.
#[tokio::test]
async fn log_files_are_private_and_hold_the_request_lines() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .current_dir(dir.path())
        .env_clear()
        .env("APP_PORT", "0")
        .env("LOG_FILE", "logs/filmvault.log")
        .env("LOG_FORMAT", "json")
        .env("DATABASE_URL", database.url())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if line.contains("filmvault is listening") {
            let address = line.split("http://127.0.0.1:").nth(1).unwrap();
            break address.split('"').next().unwrap().parse().unwrap();
        }
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = r#"{"username":"nobody","password":"S3cret-from-the-log-test"}"#;
    write!(
        stream,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // The request line is written when the response is; read stdout up to it, then stop.
    for line in lines.by_ref() {
        if line.unwrap().contains("request completed") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let logs = dir.path().join("logs");
    let file = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .expect("a log file")
        .unwrap()
        .path();
    assert!(
        file.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("filmvault.log.")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the log file is private");
    // A SQLite database is a file of ours, private too (PostgreSQL's files are the server's).
    if let Some(path) = database.sqlite_path() {
        let db_mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(db_mode & 0o077, 0, "the database is private too");
    }
    let contents = std::fs::read_to_string(&file).unwrap();
    assert!(contents.contains("filmvault is listening"));
    assert!(!contents.contains("S3cret"));
}

/// The real binary, named by `INSTANCE_ID`, in each log format: every request line says which
/// instance answered, and its metrics say it too (a process of its own, so the metrics
/// recorder holds this instance and no other).
#[tokio::test]
async fn the_instance_id_is_on_every_request_line_and_in_the_metrics() {
    for format in ["json", "pretty"] {
        let database = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server(
            Command::new(env!("CARGO_BIN_EXE_filmvault"))
                .current_dir(dir.path())
                .env_clear()
                .env("APP_PORT", "0")
                .env("METRICS_ADDR", "127.0.0.1:0")
                .env("INSTANCE_ID", "probe-7")
                .env("LOG_FORMAT", format)
                .env("RUST_LOG", "info")
                .env("DATABASE_URL", database.url())
                .env("SEED_DEMO_DATA", "false")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let lines = log_lines(&mut server.0);
        let metrics_port = port_in(&next_line_with(&lines, "metrics listener"));
        let port = port_in(&next_line_with(&lines, "filmvault is listening"));

        let client = crate::helpers::client();
        for (path, status) in [("/api/v1/films", 200), ("/api/v1/no-such-route", 404)] {
            let response = client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status, "{path}");
        }
        let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let info: Vec<&str> = metrics
            .lines()
            .filter(|line| line.starts_with("filmvault_instance_info"))
            .collect();
        assert_eq!(
            info,
            ["filmvault_instance_info{instance_id=\"probe-7\"} 1"],
            "{format}: the metrics name this instance, once"
        );

        for _ in 0..2 {
            let line = next_line_with(&lines, "request completed");
            let named = match format {
                "json" => {
                    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
                    line["span"]["instance_id"] == "probe-7"
                }
                _ => line.contains("instance_id=probe-7"),
            };
            assert!(
                named,
                "{format}: a request line without the instance: {line}"
            );
        }
    }
}

/// A server process stopped when the test ends, failed or not.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server's stdout, line by line, read on a thread of its own so the server never blocks.
fn log_lines(server: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = server.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The next line that contains `text`, waiting at most 30 s for it.
fn next_line_with(lines: &std::sync::mpsc::Receiver<String>, text: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {text:?} within 30 s"));
        if line.contains(text) {
            return line;
        }
    }
}

/// The port of the `127.0.0.1:PORT` address a log line shows, in either format.
fn port_in(line: &str) -> u16 {
    let after = line.split("127.0.0.1:").nth(1).expect("an address");
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a port")
}
