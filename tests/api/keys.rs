//! Keys and data at rest: where the data-encryption key comes from.

use std::os::unix::fs::PermissionsExt;

use reqwest::StatusCode;

use crate::helpers::{LOGS, TEST_JWT_SECRET, TestDatabase, spawn_app_on};

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
        .env("JWT_SECRET", TEST_JWT_SECRET)
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
