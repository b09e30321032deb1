//! Keys and data at rest: where the data-encryption key comes from; the access-token signing
//! keys, their publication (JWKS) and their rotation.

use std::os::unix::fs::PermissionsExt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use filmvault::db;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::Value;

use crate::helpers::{
    LOGS, TEST_DATA_ENCRYPTION_KEY, TestApp, TestDatabase, TestUser, spawn_app, spawn_app_on,
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

fn rotate_signing_key(app: &TestApp) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_filmvault"))
        .arg("rotate-signing-key")
        .env_clear()
        .env("DATABASE_URL", app.database.url())
        .env("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY)
        .env("RUST_LOG", "warn")
        .output()
        .expect("rotate-signing-key runs");
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

    let said = rotate_signing_key(&first);
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

#[tokio::test]
async fn a_retired_key_stops_verifying_once_its_tokens_have_expired() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let old_kid = kid_of(&user.token);
    rotate_signing_key(&app);
    // As if the access-token lifetime (and its margin) had passed since the rotation.
    db::execute!(
        &mut app.db().await,
        "UPDATE signing_keys SET retired_at = retired_at - 100000 WHERE kid = $1",
        &old_kid
    )
    .await
    .unwrap();
    let later = spawn_app_on(&app.database, &[]).await;
    assert!(!kids(&jwks(&later).await).contains(&old_kid));
    assert_eq!(me(&later, &user.token).await, StatusCode::UNAUTHORIZED);
    let new_token = fresh_token(&later, &user).await;
    assert_eq!(me(&later, &new_token).await, StatusCode::OK);
}
