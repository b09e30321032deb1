//! A second factor (TOTP, RFC 6238, with recovery codes) over real HTTP. The codes are
//! computed here, by hand (HMAC-SHA1 with ring), from the secret the enrolment shows: not with
//! the library the service uses, so a misuse of it would show.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filmvault::db;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TEST_DATA_ENCRYPTION_KEY, TestApp, TestUser, assert_problem, spawn_app, spawn_app_on,
    spawn_app_with,
};

/// The test's authenticator app.
pub(crate) struct Authenticator {
    secret: Vec<u8>,
    base32: String,
}

fn base32_decode(text: &str) -> Vec<u8> {
    let (mut buffer, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Authenticator {
    fn from_enrolment(enrolment: &Value) -> Self {
        let base32 = enrolment["secret"].as_str().expect("a secret").to_owned();
        Self {
            secret: base32_decode(&base32),
            base32,
        }
    }

    /// RFC 6238 with its defaults: HMAC-SHA1, 30-second steps, 6 digits.
    fn code_at(&self, unix: u64) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.secret);
        let mac = ring::hmac::sign(&key, &(unix / 30).to_be_bytes());
        let mac = mac.as_ref();
        let offset = usize::from(mac[19] & 0x0f);
        let word = u32::from_be_bytes(mac[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
        format!("{:06}", word % 1_000_000)
    }

    /// The code of the step `steps` away from the current one (the service takes one step of
    /// skew either way), computed at least two seconds before a step ends, so the request
    /// arrives in the step the code was computed in.
    pub(crate) async fn code(&self, steps: i64) -> String {
        if unix_now() % 30 >= 28 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let at = unix_now().checked_add_signed(steps * 30).unwrap();
        self.code_at(at)
    }
}

async fn json_of(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    response.json().await.expect("a JSON body")
}

async fn enrol(app: &TestApp, token: &str) -> Value {
    let response = app
        .post_json("/api/v1/users/me/mfa/totp", &json!({}), Some(token))
        .await;
    json_of(response, StatusCode::CREATED).await
}

async fn confirm(app: &TestApp, token: &str, code: &str) -> Response {
    app.post_json(
        "/api/v1/users/me/mfa/totp/confirm",
        &json!({ "code": code }),
        Some(token),
    )
    .await
}

/// `DELETE /users/me/mfa/totp`: TOTP off, with the password and a code.
pub(crate) async fn turn_off(app: &TestApp, token: &str, password: &str, code: &str) -> Response {
    app.request(Method::DELETE, "/api/v1/users/me/mfa/totp")
        .bearer(token)
        .json(&json!({ "password": password, "code": code }))
        .send()
        .await
}

/// A user with TOTP on: their authenticator (whose code of the previous step confirmed it)
/// and their recovery codes.
pub(crate) async fn user_with_mfa(app: &TestApp) -> (TestUser, Authenticator, Vec<String>) {
    let user = app.new_user().await;
    let authenticator = Authenticator::from_enrolment(&enrol(app, &user.token).await);
    let confirmed = confirm(app, &user.token, &authenticator.code(-1).await).await;
    let body = json_of(confirmed, StatusCode::OK).await;
    let codes = body["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (user, authenticator, codes)
}

/// The first step of a login of an account with MFA: its `mfa_token`.
pub(crate) async fn mfa_token(app: &TestApp, user: &TestUser) -> String {
    let body = json_of(
        app.login(&user.username, &user.password).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    body["mfa_token"].as_str().expect("an mfa_token").to_owned()
}

pub(crate) async fn login_mfa(app: &TestApp, mfa_token: &str, code: &str) -> Response {
    app.post_json(
        "/api/v1/auth/login/mfa",
        &json!({ "mfa_token": mfa_token, "code": code }),
        None,
    )
    .await
}

async fn assert_problem_type(response: Response, status: StatusCode, kind: &str) {
    let body = assert_problem(response, status).await;
    assert_eq!(body["type"], kind, "{body}");
}

#[tokio::test]
async fn enrolment_shows_the_secret_once_and_only_a_right_code_turns_it_on() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let enrolment = enrol(&app, &user.token).await;
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("otpauth://totp/filmvault:{}?", user.username)),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={}", enrolment["secret"].as_str().unwrap())));
    let qr = enrolment["qr_code"].as_str().unwrap();
    assert!(qr.starts_with("data:image/svg+xml;base64,"), "{qr:.40}");
    let authenticator = Authenticator::from_enrolment(&enrolment);
    assert_eq!(authenticator.secret.len(), 20, "160 bits");

    let wrong = confirm(&app, &user.token, "000000").await;
    let wrong = if authenticator.code(0).await == "000000" {
        confirm(&app, &user.token, "111111").await
    } else {
        wrong
    };
    assert_problem(wrong, StatusCode::UNPROCESSABLE_ENTITY).await;
    let body = json_of(
        app.login(&user.username, &user.password).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        body["access_token"].is_string(),
        "a wrong code switched nothing on"
    );

    let confirmed = confirm(&app, &user.token, &authenticator.code(0).await).await;
    let body = json_of(confirmed, StatusCode::OK).await;
    let codes = body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.as_str().unwrap().len() == 19));

    let again = confirm(&app, &user.token, &authenticator.code(1).await).await;
    assert_problem(again, StatusCode::CONFLICT).await;
    let re_enrol = app
        .post_json("/api/v1/users/me/mfa/totp", &json!({}), Some(&user.token))
        .await;
    assert_problem(re_enrol, StatusCode::CONFLICT).await;

    let key = app.api_key_secret(&user.token, &["read", "write"]).await;
    let by_key = app
        .request(Method::POST, "/api/v1/users/me/mfa/totp")
        .api_key(&key)
        .json(&json!({}))
        .send()
        .await;
    assert_problem(by_key, StatusCode::FORBIDDEN).await;

    assert_eq!(app.wait_for_audit("user.mfa_enrol", 1).await.len(), 1);
    assert_eq!(app.wait_for_audit("user.mfa_confirm", 1).await.len(), 1);
    let failures = app.wait_for_audit("auth.mfa_code_failure", 1).await;
    assert_eq!(
        failures[0].target.as_deref(),
        Some(format!("user:{}", user.id).as_str())
    );
}

#[tokio::test]
async fn the_secret_is_sealed_in_the_database() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let authenticator = Authenticator::from_enrolment(&enrol(&app, &user.token).await);
    let sealed: Vec<u8> = db::fetch_scalar!(
        &mut app.db().await,
        "SELECT secret_sealed FROM totp_credentials WHERE user_id = $1",
        user.id
    )
    .await
    .unwrap();
    assert!(sealed.len() > authenticator.secret.len());
    assert!(
        !sealed
            .windows(8)
            .any(|w| authenticator.secret.windows(8).any(|s| s == w)),
        "no part of the secret is stored in clear"
    );
    assert!(
        !String::from_utf8_lossy(&sealed).contains(&authenticator.base32[..8]),
        "nor its base32"
    );
}

#[tokio::test]
async fn a_login_with_mfa_needs_a_code_and_a_code_works_once() {
    let app = spawn_app().await;
    let (user, authenticator, _) = user_with_mfa(&app).await;
    let token = mfa_token(&app, &user).await;
    assert!(token.starts_with("mfa_"));
    let as_bearer = app.get("/api/v1/users/me", Some(&token)).await;
    assert_problem(as_bearer, StatusCode::UNAUTHORIZED).await;

    let code = authenticator.code(0).await;
    let body = json_of(login_mfa(&app, &token, &code).await, StatusCode::OK).await;
    let access = body["access_token"].as_str().expect("an access token");
    assert_eq!(app.own_id(access).await, user.id);
    assert!(body["refresh_token"].is_string());

    let used = login_mfa(&app, &token, &authenticator.code(1).await).await;
    assert_problem_type(
        used,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-mfa-token",
    )
    .await;

    let replay = login_mfa(&app, &mfa_token(&app, &user).await, &code).await;
    assert_problem_type(
        replay,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-mfa-code",
    )
    .await;
    let older = login_mfa(
        &app,
        &mfa_token(&app, &user).await,
        &authenticator.code(-1).await,
    )
    .await;
    assert_problem_type(
        older,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-mfa-code",
    )
    .await;
    let next = login_mfa(
        &app,
        &mfa_token(&app, &user).await,
        &authenticator.code(1).await,
    )
    .await;
    assert_eq!(
        next.status(),
        StatusCode::OK,
        "the next step's code is good once"
    );
}

#[tokio::test]
async fn a_recovery_code_logs_in_once() {
    let app = spawn_app().await;
    let (user, _, codes) = user_with_mfa(&app).await;
    let typed = codes[3].to_uppercase().replace('-', "");
    let body = json_of(
        login_mfa(&app, &mfa_token(&app, &user).await, &typed).await,
        StatusCode::OK,
    )
    .await;
    assert!(body["access_token"].is_string());
    let again = login_mfa(&app, &mfa_token(&app, &user).await, &codes[3]).await;
    assert_problem_type(
        again,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-mfa-code",
    )
    .await;
    let other = login_mfa(&app, &mfa_token(&app, &user).await, &codes[4]).await;
    assert_eq!(other.status(), StatusCode::OK);

    let used = app.wait_for_audit("auth.recovery_code_use", 2).await;
    assert_eq!(used.len(), 2);
    assert_eq!(used[1].reason.as_deref(), Some("8 recovery codes left"));
    let left: i64 = db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM recovery_codes WHERE user_id = $1",
        user.id
    )
    .await
    .unwrap();
    assert_eq!(left, 8, "a used code is gone");
}

#[tokio::test]
async fn an_mfa_token_dies_at_the_fifth_wrong_code_and_at_its_expiry() {
    let app = spawn_app().await;
    let (user, authenticator, _) = user_with_mfa(&app).await;
    let token = mfa_token(&app, &user).await;
    let right = authenticator.code(0).await;
    let wrong = if right == "123456" {
        "654321"
    } else {
        "123456"
    };
    for attempt in 1..=5 {
        let response = login_mfa(&app, &token, wrong).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "wrong code {attempt}"
        );
    }
    let dead = login_mfa(&app, &token, &right).await;
    assert_problem_type(
        dead,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-mfa-token",
    )
    .await;
    assert_eq!(
        app.wait_for_audit("auth.mfa_code_failure", 5).await.len(),
        5
    );

    let expiring = mfa_token(&app, &user).await;
    db::execute!(
        &mut app.db().await,
        "UPDATE mfa_challenges SET expires_at = 1 WHERE user_id = $1",
        user.id
    )
    .await
    .unwrap();
    let expired = login_mfa(&app, &expiring, &right).await;
    assert_problem_type(
        expired,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-mfa-token",
    )
    .await;
    let fresh = login_mfa(&app, &mfa_token(&app, &user).await, &right).await;
    assert_eq!(
        fresh.status(),
        StatusCode::OK,
        "the code itself was never spent"
    );
}

#[tokio::test]
async fn wrong_codes_count_as_failed_logins_and_trip_the_lockout() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("SUSPICIOUS_LOGIN_IPS_PER_USERNAME", "3"),
    ])
    .await;
    let (user, authenticator, _) = user_with_mfa(&app).await;
    for i in 1..=3 {
        let token = mfa_token(&app, &user).await;
        let response = app
            .request(Method::POST, "/api/v1/auth/login/mfa")
            .forwarded_for(&format!("203.0.113.{i}"))
            .json(&json!({ "mfa_token": token, "code": "not-a-code" }))
            .send()
            .await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let alarm = app.wait_for_audit("security.suspicious_login", 1).await;
    assert_eq!(
        alarm.first().and_then(|e| e.target.as_deref()),
        Some(format!("username:{}", user.username).as_str())
    );
    let locked = app
        .login_from("198.51.100.9", &user.username, &user.password)
        .await;
    assert_problem_type(
        locked,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/login-locked",
    )
    .await;
    let disable = turn_off(
        &app,
        &user.token,
        &user.password,
        &authenticator.code(0).await,
    )
    .await;
    assert_problem_type(
        disable,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/login-locked",
    )
    .await;
}

#[tokio::test]
async fn turning_mfa_off_needs_the_password_and_a_code() {
    let app = spawn_app().await;
    let (user, authenticator, codes) = user_with_mfa(&app).await;
    let wrong_password = turn_off(
        &app,
        &user.token,
        "wrong-password-123",
        &authenticator.code(0).await,
    )
    .await;
    assert_problem_type(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-credentials",
    )
    .await;
    let wrong_code = turn_off(&app, &user.token, &user.password, "000-not-a-code").await;
    assert_problem_type(
        wrong_code,
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-mfa-code",
    )
    .await;
    assert_eq!(
        json_of(
            app.login(&user.username, &user.password).await,
            StatusCode::OK
        )
        .await["mfa_required"],
        true,
        "still on"
    );

    let off = turn_off(&app, &user.token, &user.password, &codes[0]).await;
    assert_eq!(off.status(), StatusCode::NO_CONTENT);
    let body = json_of(
        app.login(&user.username, &user.password).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        body["access_token"].is_string(),
        "a password alone logs in again"
    );
    let again = turn_off(
        &app,
        &user.token,
        &user.password,
        &authenticator.code(1).await,
    )
    .await;
    assert_problem(again, StatusCode::CONFLICT).await;
    let events = app.wait_for_audit("user.mfa_disable", 2).await;
    let outcomes: Vec<_> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["failure", "success"],
        "the wrong password, then the disable"
    );
    let secrets: i64 = db::fetch_scalar!(
        &mut app.db().await,
        "SELECT count(*) FROM totp_credentials WHERE user_id = $1",
        user.id
    )
    .await
    .unwrap();
    assert_eq!(secrets, 0, "the secret is deleted");
}

#[tokio::test]
async fn the_profile_says_whether_mfa_is_on() {
    let app = spawn_app().await;
    let mfa_enabled = |token: String| {
        let app = &app;
        async move {
            json_of(
                app.get("/api/v1/users/me", Some(&token)).await,
                StatusCode::OK,
            )
            .await["mfa_enabled"]
                .clone()
        }
    };
    let plain = app.new_user().await;
    assert_eq!(mfa_enabled(plain.token.clone()).await, false);
    let pending = app.new_user().await;
    enrol(&app, &pending.token).await;
    assert_eq!(
        mfa_enabled(pending.token.clone()).await,
        false,
        "not before it is confirmed"
    );
    let (user, _, _) = user_with_mfa(&app).await;
    assert_eq!(mfa_enabled(user.token.clone()).await, true);
}

#[tokio::test]
async fn turning_mfa_off_needs_a_recent_login() {
    let app = spawn_app_with(&[("STEP_UP_MAX_AGE_SECS", "2")]).await;
    let (user, authenticator, _) = user_with_mfa(&app).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = turn_off(
        &app,
        &user.token,
        &user.password,
        &authenticator.code(0).await,
    )
    .await;
    assert_problem_type(
        late,
        StatusCode::UNAUTHORIZED,
        "/problems/reauthentication-required",
    )
    .await;
    let body = json_of(
        app.login(&user.username, &user.password).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["mfa_required"], true, "TOTP is still on");
}

#[tokio::test]
async fn with_require_admin_mfa_an_admin_gets_403_until_enrolled() {
    let app = spawn_app_with(&[("REQUIRE_ADMIN_MFA", "true")]).await;
    let admin = app.new_admin().await;
    let refused = app.get("/api/v1/admin/users", Some(&admin.token)).await;
    assert_problem_type(refused, StatusCode::FORBIDDEN, "/problems/mfa-required").await;
    let user = app.new_user().await;
    let not_admin = app.get("/api/v1/admin/users", Some(&user.token)).await;
    assert_problem_type(not_admin, StatusCode::FORBIDDEN, "/problems/forbidden").await;

    let authenticator = Authenticator::from_enrolment(&enrol(&app, &admin.token).await);
    let pending = app.get("/api/v1/admin/users", Some(&admin.token)).await;
    assert_problem_type(pending, StatusCode::FORBIDDEN, "/problems/mfa-required").await;
    let confirmed = confirm(&app, &admin.token, &authenticator.code(0).await).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let allowed = app.get("/api/v1/admin/users", Some(&admin.token)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
}

/// The data key a TOTP secret is sealed under (bytes 1..9 of the sealed value).
async fn sealed_key_id(app: &TestApp, user_id: i64) -> Vec<u8> {
    let sealed: Vec<u8> = db::fetch_scalar!(
        &mut app.db().await,
        "SELECT secret_sealed FROM totp_credentials WHERE user_id = $1",
        user_id
    )
    .await
    .unwrap();
    sealed[1..9].to_vec()
}

#[tokio::test]
async fn rotate_data_key_reseals_the_totp_secrets() {
    let app = spawn_app().await;
    let (user, authenticator, _) = user_with_mfa(&app).await;
    let old_id = sealed_key_id(&app, user.id).await;
    let new_key = "L0hYQ2Ywe3Bd8Q3dJ1nEwF2mZ4l0cXQe9yT6s5bVq8A=";
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_filmvault"));
    command
        .arg("rotate-data-key")
        .env_clear()
        .env("DATABASE_URL", app.database.url())
        .env("DATA_ENCRYPTION_KEY", new_key)
        .env("DATA_ENCRYPTION_KEYS_PREVIOUS", TEST_DATA_ENCRYPTION_KEY)
        .env("RUST_LOG", "warn");
    let output = crate::helpers::output_of(command, "").await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("re-sealed 1 TOTP secrets"), "{printed}");

    let after = spawn_app_on(&app.database, &[("DATA_ENCRYPTION_KEY", new_key)]).await;
    assert_ne!(
        sealed_key_id(&after, user.id).await,
        old_id,
        "under the new key"
    );
    let token = mfa_token(&after, &user).await;
    let login = login_mfa(&after, &token, &authenticator.code(0).await).await;
    assert_eq!(
        login.status(),
        StatusCode::OK,
        "the secret opens without the old key"
    );
}

#[tokio::test]
async fn wrong_codes_on_two_instances_add_up_to_one_lockout() {
    let Some(redis_url) = crate::test_redis::test_redis_url() else {
        return;
    };
    let (first, second) = crate::cluster::spawn_cluster(
        &redis_url,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("SUSPICIOUS_LOGIN_IPS_PER_USERNAME", "3"),
        ],
    )
    .await;
    let (user, authenticator, _) = user_with_mfa(&first).await;
    let spare = mfa_token(&second, &user).await;
    for (app, client) in [
        (&first, "203.0.113.1"),
        (&second, "203.0.113.2"),
        (&first, "203.0.113.3"),
    ] {
        let token = mfa_token(app, &user).await;
        let response = app
            .request(Method::POST, "/api/v1/auth/login/mfa")
            .forwarded_for(client)
            .json(&json!({ "mfa_token": token, "code": "not-a-code" }))
            .send()
            .await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let locked = second
        .login_from("203.0.113.4", &user.username, &user.password)
        .await;
    assert_problem_type(
        locked,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/login-locked",
    )
    .await;
    let right_code = login_mfa(&second, &spare, &authenticator.code(0).await).await;
    assert_problem_type(
        right_code,
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/login-locked",
    )
    .await;
}
