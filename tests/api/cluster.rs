//! Several instances on one database and one Redis (`REDIS_URL`): limits, lockouts and
//! revocations hold whichever instance answers; when Redis goes away every instance fails
//! closed, and all recovers by itself when it is back.
//!
//! These tests need Redis (see `tests/support/test_redis.rs`: `TEST_REDIS_URL`, or a private
//! `redis-server`), and the `redis-server` and `redis-cli` binaries for the ones that stop and
//! start a server of their own. In CI they fail without them; a developer's run skips them
//! and says so.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    account_deletion::delete_account,
    helpers::{
        STRONG_PASSWORD, TestApp, TestUser, assert_problem, assert_rate_limited, header_u64,
        spawn_app_on, spawn_app_with,
    },
    rate_limit::assert_draft_fields_match,
    test_redis::test_redis_url,
};

/// Two instances on one database file and one Redis, under a key prefix of their own.
pub(crate) async fn spawn_cluster(
    redis_url: &str,
    overrides: &[(&str, &str)],
) -> (TestApp, TestApp) {
    let prefix = format!("filmvault-test-{}", uuid::Uuid::new_v4().simple());
    let mut vars = vec![
        ("REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    vars.extend_from_slice(overrides);
    let first = spawn_app_with(&[vars.as_slice(), &[("INSTANCE_ID", "first")]].concat()).await;
    let second = spawn_app_on(
        &first.database,
        &[vars.as_slice(), &[("INSTANCE_ID", "second")]].concat(),
    )
    .await;
    (first, second)
}

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/v1/users/me", Some(token)).await.status()
}

async fn logout(app: &TestApp, token: &str) {
    let response = app
        .request(Method::POST, "/api/v1/auth/logout")
        .bearer(token)
        .send()
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "logout");
}

/// Polls `app` until it refuses `token`; returns how long that took after the call.
async fn refused_after(app: &TestApp, token: &str, bound: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let status = me(app, token).await;
        if status == StatusCode::UNAUTHORIZED {
            return start.elapsed();
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            start.elapsed() < bound,
            "the other instance still accepts the token after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn the_auth_limit_trips_at_the_same_count_whichever_instance_answers() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let (first, second) = spawn_cluster(&redis_url, &[("RATE_LIMIT_AUTH", "5/min")]).await;
    for attempt in 1..=5 {
        let app = if attempt % 2 == 0 { &second } else { &first };
        let response = app.login("someone", "guess-number-n").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
        assert_eq!(header_u64(&response, "x-ratelimit-limit"), 5);
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 5 - attempt);
        assert_draft_fields_match(&response, "auth", 5, 60);
    }
    for app in [&first, &second] {
        assert_rate_limited(app.login("someone", "guess-number-n").await).await;
    }
}

#[tokio::test]
async fn the_global_and_write_limits_are_shared_too() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let (first, second) = spawn_cluster(
        &redis_url,
        &[
            ("RATE_LIMIT_GLOBAL", "6/min"),
            ("RATE_LIMIT_WRITE", "2/min"),
        ],
    )
    .await;
    for (attempt, app) in [&first, &second, &first].into_iter().enumerate() {
        assert_eq!(
            app.get("/api/v1/films", None).await.status(),
            StatusCode::OK,
            "read {attempt}"
        );
    }
    for app in [&second, &first] {
        let response = app
            .post_json(
                "/api/v1/films",
                &json!({ "name": "x", "studio": "y" }),
                None,
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "anonymous write"
        );
    }
    let third_write = second
        .post_json(
            "/api/v1/films",
            &json!({ "name": "x", "studio": "y" }),
            None,
        )
        .await;
    assert_problem(third_write, StatusCode::TOO_MANY_REQUESTS).await;
    let seventh = first.get("/api/v1/films", None).await;
    assert_problem(seventh, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn a_lockout_made_on_one_instance_holds_on_the_other() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let (first, second) = spawn_cluster(
        &redis_url,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("SUSPICIOUS_LOGIN_IPS_PER_USERNAME", "3"),
        ],
    )
    .await;
    let user = first.new_user().await;
    for (app, client) in [
        (&first, "203.0.113.1"),
        (&second, "203.0.113.2"),
        (&first, "203.0.113.3"),
    ] {
        let status = app
            .login_from(client, &user.username, "not-the-password")
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "from {client}");
    }
    // The right password, from a fresh client, on the other instance: locked.
    let response = second
        .login_from("203.0.113.4", &user.username, &user.password)
        .await;
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/login-locked");
}

#[tokio::test]
async fn the_per_username_login_budget_is_shared_across_instances_and_clients() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let (first, second) = spawn_cluster(
        &redis_url,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_LOGIN_PER_USERNAME", "3/hour"),
        ],
    )
    .await;
    let user = first.new_user().await;
    for (app, client) in [(&first, "203.0.113.1"), (&second, "203.0.113.2")] {
        let status = app
            .login_from(client, &user.username, "not-the-password")
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "from {client}");
    }
    // new_user's own login spent the first unit: the budget is gone.
    let status = second
        .login_from("203.0.113.3", &user.username, &user.password)
        .await
        .status();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

/// Usernames and client addresses reach Redis only as keyed hashes (`Pseudonyms`, from the
/// data key), in key names and in the login monitor's sets: Redis, or a copy of it, names no
/// account and no client, even to someone hashing a list of usernames or every IPv4 address,
/// which reverses a plain SHA-256.
#[tokio::test]
async fn redis_reveals_no_username_and_no_client_address_even_to_a_list_of_them() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let prefix = format!("filmvault-test-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(&[
        ("REDIS_URL", redis_url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        // Slow enough that the username's and the clients' buckets are still in Redis when
        // the keys are read.
        ("RATE_LIMIT_LOGIN_PER_USERNAME", "5/hour"),
        ("RATE_LIMIT_GLOBAL", "1000/hour"),
    ])
    .await;
    let user = app.new_user().await;
    for client in ["203.0.113.1", "203.0.113.2"] {
        let status = app
            .login_from(client, &user.username, "not-the-password")
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "from {client}");
    }

    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let per_username = |kind: &str| keys.iter().filter(|key| key.contains(kind)).count();
    assert!(
        per_username(":login:failures:user:") == 1 && per_username(":rl:login-user:") == 1,
        "the failures were counted per username: {keys:?}"
    );
    assert!(
        per_username(":login:failures:client:") == 2 && per_username(":rl:global:client:") >= 2,
        "the failures and the requests were counted per client: {keys:?}"
    );
    let mut stored = keys.clone();
    for key in keys.iter().filter(|key| key.contains(":login:failures:")) {
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(!members.is_empty(), "{key} holds who failed");
        stored.extend(members);
    }
    let plain_hash = |value: &str| hex::encode(Sha256::digest(value.as_bytes()));
    let username = user.username.to_lowercase();
    let named = [username.as_str(), "203.0.113.1", "203.0.113.2"];
    for text in &stored {
        for name in named {
            assert!(!text.to_lowercase().contains(name), "{name} in {text}");
            assert!(
                !text.contains(&plain_hash(name)),
                "a plain SHA-256 of {name}: {text}"
            );
        }
    }
}

/// A fresh user's token, already accepted (and so remembered) by `other`.
async fn user_seen_by(app: &TestApp, other: &TestApp) -> TestUser {
    let user = app.new_user().await;
    assert_eq!(me(other, &user.token).await, StatusCode::OK);
    user
}

#[tokio::test]
async fn every_revocation_on_one_instance_stops_the_token_on_the_other() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    let (first, second) = spawn_cluster(&redis_url, &[]).await;
    let bound = Duration::from_secs(2);
    let admin = first.new_admin().await;

    let user = user_seen_by(&first, &second).await;
    logout(&first, &user.token).await;
    refused_after(&second, &user.token, bound).await;

    let user = user_seen_by(&first, &second).await;
    let (access, refresh) = first.token_pair(&user.username, &user.password).await;
    assert_eq!(me(&first, &access).await, StatusCode::OK);
    assert_eq!(first.refresh(&refresh).await.status(), StatusCode::OK);
    // Reuse of the spent refresh token, on the second instance, ends the session there...
    assert_eq!(
        second.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // ...and on the first.
    refused_after(&first, &access, bound).await;

    for change in [json!({ "disabled": true }), json!({ "role": "admin" })] {
        let user = user_seen_by(&second, &first).await;
        let response = second
            .patch_json(
                &format!("/api/v1/admin/users/{}", user.id),
                &change,
                Some(&admin.token),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{change}");
        refused_after(&first, &user.token, bound).await;
    }

    let user = user_seen_by(&first, &second).await;
    let response = first
        .put_json(
            "/api/v1/users/me/password",
            &json!({ "current_password": user.password, "new_password": "a-whole-new-phrase-77" }),
            Some(&user.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "password change");
    refused_after(&second, &user.token, bound).await;

    let user = user_seen_by(&first, &second).await;
    let response = delete_account(&first, &user.token, &user.password).await;
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "account deletion"
    );
    refused_after(&second, &user.token, bound).await;
}

/// The propagation figure in the README comes from this test (`--nocapture` prints it).
#[tokio::test]
async fn a_logout_reaches_the_other_instance_within_a_hundred_ms_at_the_99th_percentile() {
    let Some(redis_url) = test_redis_url() else {
        return;
    };
    const SAMPLES: usize = 100;
    let (first, second) = spawn_cluster(&redis_url, &[]).await;
    let user = first.new_user().await;
    let mut tokens = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let token = first.access_token(&user.username, STRONG_PASSWORD).await;
        assert_eq!(me(&second, &token).await, StatusCode::OK);
        tokens.push(token);
    }
    let mut latencies = Vec::with_capacity(SAMPLES);
    for token in &tokens {
        logout(&first, token).await;
        latencies.push(refused_after(&second, token, Duration::from_secs(5)).await);
    }
    latencies.sort();
    let percentile = |p: usize| latencies[(SAMPLES * p / 100).min(SAMPLES - 1)];
    println!(
        "revocation propagation over {SAMPLES} logouts: p50 {:?}, p99 {:?}, max {:?}",
        percentile(50),
        percentile(99),
        latencies[SAMPLES - 1]
    );
    // Generous: the target is 100 ms; a loaded test machine must not make this flaky.
    assert!(percentile(99) < Duration::from_secs(1), "{latencies:?}");
}

/// A private `redis-server` on a free port, which a test may stop and start again.
struct RedisServer {
    port: u16,
    process: Option<Child>,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            port,
            process: None,
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let process = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().expect("redis-server stops");
            process.wait().expect("redis-server is reaped");
        }
    }

    fn command(&self, args: &[&str]) {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        assert!(output.status.success(), "redis-cli {args:?}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_until_ready(app: &TestApp, bound: Duration) {
    let start = Instant::now();
    while app.get("/health/ready", None).await.status() != StatusCode::OK {
        assert!(
            start.elapsed() < bound,
            "not ready {bound:?} after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_redis_the_instance_is_not_ready_refuses_everything_with_503_and_then_recovers() {
    if test_redis_url().is_none() {
        return;
    }
    let mut redis = RedisServer::start();
    let app = spawn_app_with(&[("REDIS_URL", &redis.url())]).await;
    let user = app.new_user().await;
    let (_, refresh) = app.token_pair(&user.username, &user.password).await;
    assert_eq!(
        app.get("/health/ready", None).await.status(),
        StatusCode::OK
    );

    redis.stop();
    assert_problem(
        app.get("/health/ready", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK);
    let requests = [
        ("login", app.login(&user.username, &user.password).await),
        ("register", app.register("newcomer", STRONG_PASSWORD).await),
        ("refresh", app.refresh(&refresh).await),
        ("read", app.get("/api/v1/films", None).await),
        (
            "authenticated",
            app.get("/api/v1/users/me", Some(&user.token)).await,
        ),
    ];
    for (what, response) in requests {
        assert!(header_u64(&response, "retry-after") >= 1, "{what}");
        let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["type"], "/problems/unavailable", "{what}");
    }

    redis.restart();
    wait_until_ready(&app, Duration::from_secs(10)).await;
    let (_, refresh) = app.token_pair(&user.username, &user.password).await;
    assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
    assert_eq!(me(&app, &user.token).await, StatusCode::OK);
}

#[tokio::test]
async fn past_the_staleness_bound_tokens_are_checked_in_the_database_and_a_resync_follows() {
    if test_redis_url().is_none() {
        return;
    }
    let redis = RedisServer::start();
    let (first, second) =
        spawn_cluster(&redis.url(), &[("REVOCATION_MAX_STALENESS_MS", "400")]).await;
    let logged_out = user_seen_by(&first, &second).await;
    let changes_password = user_seen_by(&first, &second).await;

    // Only the channel goes: the default user loses pub/sub (Redis drops its subscriptions
    // and refuses PUBLISH), while the limiters' scripts keep working.
    redis.command(&["ACL", "SETUSER", "default", "resetchannels"]);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    logout(&first, &logged_out.token).await;
    assert_eq!(
        me(&second, &logged_out.token).await,
        StatusCode::UNAUTHORIZED,
        "past the bound, the database is asked at once"
    );

    let response = first
        .put_json(
            "/api/v1/users/me/password",
            &json!({
                "current_password": changes_password.password,
                "new_password": "a-whole-new-phrase-77",
            }),
            Some(&changes_password.token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "password change");

    // The channel is back: the second instance resubscribes and re-reads the revocations
    // it missed, so memory it trusts again refuses the old token.
    redis.command(&["ACL", "SETUSER", "default", "allchannels"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        me(&second, &changes_password.token).await,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn production_on_postgresql_without_redis_refuses_to_start_and_says_why() {
    let output = Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .env_clear()
        .env("APP_ENV", "production")
        .env(
            "DATA_ENCRYPTION_KEY",
            crate::helpers::TEST_DATA_ENCRYPTION_KEY,
        )
        .env("TLS_TERMINATED_BY_PROXY", "true")
        .env("TRUSTED_PROXIES", "10.0.0.1")
        .env("DATABASE_URL", "postgres://filmvault@127.0.0.1:1/filmvault")
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
    assert!(stderr.contains("SINGLE_INSTANCE=true"), "{stderr}");
}
