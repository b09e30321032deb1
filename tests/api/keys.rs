//! Keys and data at rest: where the data-encryption key comes from; the access-token signing
//! keys, their publication (JWKS) and their rotation.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use filmvault::db;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use ring::signature::{ED25519, KeyPair, UnparsedPublicKey};
use serde_json::Value;

use crate::{
    helpers::{
        LOGS, TEST_DATA_ENCRYPTION_KEY, TestApp, TestDatabase, TestUser, output_of, spawn_app,
        spawn_app_on,
    },
    tokens::{SigningKey, claims_for},
};

/// An empty value counts as unset: the development key file stands in.
const NO_DATA_KEY: (&str, &str) = ("DATA_ENCRYPTION_KEY", "");

#[tokio::test]
async fn development_makes_a_private_data_key_file_beside_the_database_once_and_says_where() {
    let database = TestDatabase::create().await;
    // On PostgreSQL the file goes to the working directory (a unit test checks that path);
    // this test would leave it in the repository.
    let Some(sqlite) = database.sqlite_path() else {
        return;
    };
    let key_file = sqlite.with_file_name("filmvault.db.data-key");

    let first = spawn_app_on(&database, &[NO_DATA_KEY]).await;
    assert_eq!(
        first.get("/health/ready", None).await.status(),
        StatusCode::OK
    );
    let mode = std::fs::metadata(&key_file)
        .expect("the key file is made on first run")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the service's user reads the key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let logs = LOGS.contents();
    assert!(
        logs.contains("created a development data key file")
            && logs.contains(&key_file.display().to_string()),
        "the log says where the key file is"
    );
    assert!(!logs.contains(key.trim()), "the key is logged");

    let second = spawn_app_on(&database, &[NO_DATA_KEY]).await;
    assert_eq!(
        second.get("/health/ready", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "a restart reuses the key instead of replacing it"
    );
}

#[test]
fn production_refuses_to_start_without_a_data_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .current_dir(dir.path())
        .env_clear()
        .env("APP_ENV", "production")
        .env("TLS_TERMINATED_BY_PROXY", "true")
        .env("TRUSTED_PROXIES", "10.0.0.1")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATA_ENCRYPTION_KEY"), "{stderr}");
    assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "production never falls back to a key file"
    );
}

/// The published key set, and the kid of a token's header.
async fn jwks(app: &TestApp) -> Value {
    let response = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    response.json().await.unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("tokens name their key")
}

async fn fresh_token(app: &TestApp, user: &TestUser) -> String {
    app.access_token(&user.username, &user.password).await
}

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/v1/users/me", Some(token)).await.status()
}

#[tokio::test]
async fn a_token_verifies_with_nothing_but_the_published_jwks() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let published = jwks(&app).await;
    let keys = published["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    for (field, value) in [
        ("kty", "OKP"),
        ("crv", "Ed25519"),
        ("alg", "EdDSA"),
        ("use", "sig"),
    ] {
        assert_eq!(jwk[field], value, "{field}");
    }
    assert!(jwk.get("d").is_none(), "the private key is published");
    assert_eq!(jwk["kid"], kid_of(&user.token));

    // A verifier that knows only the JWKS: the signature, with ring alone...
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let (message, signature) = user.token.rsplit_once('.').unwrap();
    UnparsedPublicKey::new(&ED25519, &x)
        .verify(
            message.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .expect("the published key verifies the signature");
    // ...and the whole token, claims included, with jsonwebtoken.
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["filmvault"]);
    validation.set_audience(&["filmvault-api"]);
    let claims = jsonwebtoken::decode::<Value>(&user.token, &key, &validation)
        .expect("the token verifies")
        .claims;
    assert_eq!(claims["sub"], user.id.to_string());
}

#[tokio::test]
async fn instances_starting_together_on_an_empty_database_share_one_signing_key() {
    let database = TestDatabase::create().await;
    let (a, b, c) = tokio::join!(
        spawn_app_on(&database, &[]),
        spawn_app_on(&database, &[]),
        spawn_app_on(&database, &[]),
    );
    let count: i64 = db::fetch_scalar!(&mut a.db().await, "SELECT count(*) FROM signing_keys")
        .await
        .unwrap();
    assert_eq!(count, 1);
    let published = kids(&jwks(&a).await);
    assert_eq!(kids(&jwks(&b).await), published);
    assert_eq!(kids(&jwks(&c).await), published);
}

async fn rotate_signing_key(app: &TestApp) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_filmvault"));
    command
        .arg("rotate-signing-key")
        .env_clear()
        .env("DATABASE_URL", app.database.url())
        .env("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY)
        .env("RUST_LOG", "warn");
    let output = output_of(command, "").await;
    assert!(
        output.status.success(),
        "rotate-signing-key failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn after_a_rotation_every_instance_signs_with_the_new_key_and_old_tokens_still_work() {
    let first = spawn_app().await;
    let second = spawn_app_on(&first.database, &[]).await;
    let user = first.new_user().await;
    let old_token = user.token.clone();
    let old_kid = kid_of(&old_token);

    let said = rotate_signing_key(&first).await;
    assert!(said.contains(&old_kid), "{said}");

    // The instance that has not signed since learns of the new key at its next token...
    let from_second = fresh_token(&second, &user).await;
    let new_kid = kid_of(&from_second);
    assert_ne!(new_kid, old_kid);
    assert!(said.contains(&new_kid), "{said}");
    // ...the other one verifies it before it ever signed with it (an unknown kid re-reads)...
    assert_eq!(me(&first, &from_second).await, StatusCode::OK);
    // ...and signs with it too.
    assert_eq!(kid_of(&fresh_token(&first, &user).await), new_kid);
    // Tokens the old key signed keep working on both, and both keys are published.
    assert_eq!(me(&first, &old_token).await, StatusCode::OK);
    assert_eq!(me(&second, &old_token).await, StatusCode::OK);
    assert_eq!(
        kids(&jwks(&first).await),
        [new_kid.clone(), old_kid.clone()]
    );
    assert_eq!(kids(&jwks(&second).await), [new_kid, old_kid]);
    // The retired key's private half is gone from the database.
    let private_keys: i64 = db::fetch_scalar!(
        &mut first.db().await,
        "SELECT count(*) FROM signing_keys WHERE private_key IS NOT NULL"
    )
    .await
    .unwrap();
    assert_eq!(private_keys, 1);
}

/// Rotates the signing key with the real CLI, then ages the retirement of `kid` as if the
/// access-token lifetime (and its margin) had passed since.
async fn retire_long_ago(app: &TestApp, kid: &str) {
    rotate_signing_key(app).await;
    db::execute!(
        &mut app.db().await,
        "UPDATE signing_keys SET retired_at = retired_at - 100000 WHERE kid = $1",
        kid
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_retired_key_stops_verifying_once_its_tokens_have_expired() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let old_kid = kid_of(&user.token);
    retire_long_ago(&app, &old_kid).await;
    let later = spawn_app_on(&app.database, &[]).await;
    assert!(!kids(&jwks(&later).await).contains(&old_kid));
    assert_eq!(me(&later, &user.token).await, StatusCode::UNAUTHORIZED);
    let new_token = fresh_token(&later, &user).await;
    assert_eq!(me(&later, &new_token).await, StatusCode::OK);
}

/// Made-up kids cost at most one re-read of the key set a second: a kid added to the database
/// just after one is not found until the second has passed.
#[tokio::test]
async fn unknown_kids_reread_the_key_set_at_most_once_a_second() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let claims = claims_for(user.id);
    let made_up = SigningKey::stranger();
    assert_eq!(
        me(&app, &made_up.sign(&made_up.header(), &claims)).await,
        StatusCode::UNAUTHORIZED
    );
    // A key that verifies (retired just now) appears in the database, as from a peer.
    let peer = SigningKey::stranger();
    db::execute!(
        &mut app.db().await,
        "INSERT INTO signing_keys (kid, public_key, created_at, retired_at)
         VALUES ($1, $2, $3, $3)",
        &peer.kid,
        peer.pair.public_key().as_ref().to_vec(),
        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
    )
    .await
    .unwrap();
    let token = peer.sign(&peer.header(), &claims);
    assert_eq!(
        me(&app, &token).await,
        StatusCode::UNAUTHORIZED,
        "re-read again within the second"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(me(&app, &token).await, StatusCode::OK);
}

/// Runs the binary in an empty directory with `env` at trace level, until it exits or for at
/// most `run_for`, and gives back everything it printed.
fn output_of_a_run(env: &[(&str, &str)], run_for: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("APP_PORT", "0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = std::time::Instant::now() + run_for;
    while server.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let output = server.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every spelling of a secret a careless log line or error could carry: as configured, and
/// for a key, its bytes in hex and as Rust's `Debug` prints an array.
fn spellings(secret: &str) -> Vec<String> {
    let mut found = vec![secret.to_owned()];
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(secret) {
        found.push(hex::encode(&bytes));
        found.push(
            format!("{:?}", &bytes[..4])
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    found
}

#[test]
fn no_key_password_or_passphrase_reaches_the_log_or_an_error() {
    let previous_key = "m8Jqv7l9kQvQx0n1c3ZyTnU2R1pYbU5hV2ZzQ0E0Tm8=";
    let passphrase = "correct-horse-battery-staple-backup";
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let database_url =
        format!("postgres://filmvault:Db-Pw-7f3a9c@127.0.0.1:{closed_port}/filmvault");
    let redis_url = format!("redis://:Redis-Pw-5e1d2b@127.0.0.1:{closed_port}/0");
    let secrets = [
        TEST_DATA_ENCRYPTION_KEY,
        previous_key,
        passphrase,
        "Db-Pw-7f3a9c",
        "Redis-Pw-5e1d2b",
    ];
    let keys = [
        ("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY),
        ("DATA_ENCRYPTION_KEYS_PREVIOUS", previous_key),
        ("BACKUP_PASSPHRASE", passphrase),
    ];
    let sqlite = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}/films.db", sqlite.path().display());
    let short_key = &TEST_DATA_ENCRYPTION_KEY[..40];
    let runs = [
        // A server that starts, creates its signing key and serves: at trace level.
        (
            [&keys[..], &[("DATABASE_URL", sqlite_url.as_str())]].concat(),
            5,
        ),
        // Engines that refuse the connection: the errors name them, not their passwords
        // (the start gives up after the pool's 10 s).
        (
            [
                &keys[..],
                &[
                    ("DATABASE_URL", database_url.as_str()),
                    ("REDIS_URL", redis_url.as_str()),
                ],
            ]
            .concat(),
            15,
        ),
        // A malformed key is refused without being repeated.
        (
            vec![
                ("DATABASE_URL", sqlite_url.as_str()),
                ("DATA_ENCRYPTION_KEY", short_key),
            ],
            5,
        ),
    ];
    for (run, (env, seconds)) in runs.iter().enumerate() {
        let output = output_of_a_run(env, Duration::from_secs(*seconds));
        assert!(!output.is_empty(), "run {run} printed nothing");
        let mut checked = secrets
            .iter()
            .flat_map(|s| spellings(s))
            .collect::<Vec<_>>();
        checked.push(short_key.to_owned());
        for secret in checked {
            assert!(
                !output.contains(&secret),
                "run {run} printed a secret ({secret}):\n{output}"
            );
        }
    }
}

/// A token this instance verified before (and remembers, to skip the signature check) stops
/// with its key: once the key set no longer verifies the key, the remembered token is a 401.
#[tokio::test]
async fn a_token_verified_before_its_key_retired_stops_with_the_key() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    assert_eq!(me(&app, &user.token).await, StatusCode::OK);
    let old_kid = kid_of(&user.token);
    retire_long_ago(&app, &old_kid).await;
    // An unknown kid makes the instance re-read its key set now, not at its next refresh.
    let made_up = SigningKey::stranger();
    let unknown = made_up.sign(&made_up.header(), &claims_for(user.id));
    assert_eq!(me(&app, &unknown).await, StatusCode::UNAUTHORIZED);
    assert!(!kids(&jwks(&app).await).contains(&old_kid));
    assert_eq!(me(&app, &user.token).await, StatusCode::UNAUTHORIZED);
}
