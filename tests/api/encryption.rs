//! Emails at rest: sealed in the database, found through their blind index, absent from the
//! database files, the audit trail and the log; `rotate-data-key` re-seals them under a new
//! key while the service serves.

use std::{
    path::Path,
    process::{Command, Output},
    str::FromStr,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use filmvault::db;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection, SqliteConnection, sqlite::SqliteConnectOptions};

use crate::helpers::{
    LOGS, STRONG_PASSWORD, TEST_DATA_ENCRYPTION_KEY, TestApp, TestDatabase, spawn_app_on,
    spawn_app_with, unique_username,
};

/// A fresh random data key, as `openssl rand -base64 32` makes one.
fn data_key() -> String {
    let bytes = [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat();
    STANDARD.encode(bytes)
}

/// An address no other test uses, in its normal form, with an upper-case local part: its
/// lower-cased form must not leak either.
fn distinctive_email(tag: &str) -> String {
    let nonce = &uuid::Uuid::new_v4().simple().to_string()[..10];
    format!("Zephyrine.{tag}.{nonce}@quillfeather.example")
}

/// Every spelling of `email` that would give it away: as typed, lower-cased, upper-cased,
/// and its local part alone.
fn spellings(email: &str) -> Vec<String> {
    let local = email.split('@').next().unwrap();
    vec![
        email.to_owned(),
        email.to_ascii_lowercase(),
        email.to_ascii_uppercase(),
        local.to_owned(),
        local.to_ascii_lowercase(),
    ]
}

fn assert_absent(haystack: &[u8], emails: &[String], place: &str) {
    for email in emails {
        for spelling in spellings(email) {
            assert!(
                !haystack
                    .windows(spelling.len())
                    .any(|window| window == spelling.as_bytes()),
                "{spelling} appears in {place}"
            );
        }
    }
}

async fn register(app: &TestApp, username: &str, email: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/register",
        &json!({ "username": username, "email": email, "password": STRONG_PASSWORD }),
        None,
    )
    .await
}

/// The address the service shows the user, after logging in as them.
async fn own_email(app: &TestApp, username: &str) -> String {
    let token = app.access_token(username, STRONG_PASSWORD).await;
    let me: Value = app
        .get("/api/v1/users/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    me["email"].as_str().expect("an email").to_owned()
}

/// The binary itself, on the app's database, logging everything, with the tests' settings
/// and `env` (which wins) in its environment, and nothing else.
async fn filmvault(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filmvault"));
    command
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("DATA_ENCRYPTION_KEY", TEST_DATA_ENCRYPTION_KEY)
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied());
    crate::helpers::output_of(command, "").await
}

fn succeeded(output: &Output, what: &str) -> Vec<u8> {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    [output.stdout.as_slice(), &output.stderr].concat()
}

/// The data-key id every stored sealed value names (bytes 1..9 of the value): the emails,
/// then the private signing keys.
async fn sealing_key_ids(app: &TestApp) -> Vec<Vec<u8>> {
    let sealed: Vec<Vec<u8>> = db::fetch_scalars!(
        &mut app.db().await,
        "SELECT email_sealed FROM users
         UNION ALL SELECT private_key FROM signing_keys WHERE private_key IS NOT NULL"
    )
    .await
    .unwrap();
    sealed.iter().map(|value| value[1..9].to_vec()).collect()
}

/// The key id of each address a mailed link is bound to.
async fn link_key_ids(app: &TestApp) -> Vec<Vec<u8>> {
    let sealed: Vec<Vec<u8>> = db::fetch_scalars!(
        &mut app.db().await,
        "SELECT email_sealed FROM account_tokens WHERE email_sealed IS NOT NULL"
    )
    .await
    .unwrap();
    sealed.iter().map(|value| value[1..9].to_vec()).collect()
}

/// What the database holds, as bytes: the SQLite file with its WAL and shared memory; on
/// PostgreSQL, every row of every table that could hold an address, as text.
async fn stored_bytes(app: &TestApp) -> Vec<u8> {
    if let Some(path) = app.database.sqlite_path() {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            if Path::new(&file).exists() {
                bytes.extend(std::fs::read(&file).unwrap());
            }
        }
        assert!(!bytes.is_empty(), "the database file is read");
        return bytes;
    }
    let rows: Vec<String> = db::fetch_scalars!(
        &mut app.db().await,
        "SELECT t::text FROM users t
         UNION ALL SELECT t::text FROM audit_events t"
    )
    .await
    .unwrap();
    rows.join("\n").into_bytes()
}

#[tokio::test]
async fn no_email_reaches_the_database_files_the_audit_trail_or_the_log_in_clear() {
    let app = spawn_app_with(&[]).await;
    let users: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                unique_username("sealed"),
                distinctive_email(&format!("user{i}")),
            )
        })
        .collect();
    for (username, email) in &users {
        let response = register(&app, username, email).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            own_email(&app, username).await,
            *email,
            "shown to its owner as stored"
        );
    }
    let admin_name = unique_username("sealed_admin");
    let admin_email = distinctive_email("admin");
    let cli_output = succeeded(
        &filmvault(
            app.database.url(),
            &[
                "create-admin",
                "--username",
                &admin_name,
                "--email",
                &admin_email,
            ],
            &[("ADMIN_PASSWORD", STRONG_PASSWORD)],
        )
        .await,
        "create-admin",
    );

    // Login and lookups still work, and the address is one address in any case.
    for (username, email) in &users {
        assert_eq!(own_email(&app, username).await, *email);
        for again in [email.to_ascii_lowercase(), email.to_ascii_uppercase()] {
            app.assert_email_taken(&again).await;
        }
    }
    app.assert_email_taken(&admin_email.to_lowercase()).await;
    // An address typed where the username goes is refused, and not echoed into the audit
    // trail or the log.
    let response = app.login(&users[0].1, STRONG_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let admin_token = app.access_token(&admin_name, STRONG_PASSWORD).await;
    let listing: Value = app
        .get("/api/v1/admin/users?limit=100", Some(&admin_token))
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["email"].as_str().unwrap())
        .collect();
    for (_, email) in &users {
        assert!(listed.contains(&email.as_str()), "{email} in {listed:?}");
    }

    let mut emails: Vec<String> = users.iter().map(|(_, email)| email.clone()).collect();
    emails.push(admin_email);
    assert_absent(&stored_bytes(&app).await, &emails, "the database");
    let logs = LOGS.contents();
    assert_absent(logs.as_bytes(), &emails, "the service's log");
    assert_absent(&cli_output, &emails, "create-admin's output");
    // The scans can fail: the same requests' usernames are there.
    assert!(logs.contains(&users[0].0), "the log is captured");
    assert!(
        String::from_utf8_lossy(&cli_output).contains(&admin_name),
        "create-admin's output is captured"
    );
}

#[tokio::test]
async fn rotate_data_key_reseals_every_email_and_signing_key_while_the_service_serves() {
    let (old_key, new_key) = (data_key(), data_key());
    let before = spawn_app_with(&[("DATA_ENCRYPTION_KEY", &old_key)]).await;
    let mut users: Vec<(String, String)> = Vec::new();
    for i in 0..3 {
        let user = (
            unique_username("rotate"),
            distinctive_email(&format!("rot{i}")),
        );
        let response = register(&before, &user.0, &user.1).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        users.push(user);
    }
    let old_ids = sealing_key_ids(&before).await;
    assert!(old_ids.windows(2).all(|pair| pair[0] == pair[1]), "one key");
    let old_id = old_ids[0].clone();

    // Every instance restarted with the new key, the old one still known.
    let both = [
        ("DATA_ENCRYPTION_KEY", new_key.as_str()),
        ("DATA_ENCRYPTION_KEYS_PREVIOUS", old_key.as_str()),
    ];
    let during = spawn_app_on(&before.database, &both).await;
    let late = (unique_username("rotate"), distinctive_email("late"));
    assert_eq!(
        register(&during, &late.0, &late.1).await.status(),
        StatusCode::ACCEPTED
    );
    users.push(late);
    // A row still indexed under the old key is found: its address stays taken.
    during
        .assert_email_taken(&users[0].1.to_ascii_uppercase())
        .await;

    let rotation = {
        let url = during.database.url().to_owned();
        let both = both.map(|(name, value)| (name, value.to_owned()));
        tokio::spawn(async move {
            let both = both.each_ref().map(|(name, value)| (*name, value.as_str()));
            filmvault(&url, &["rotate-data-key"], &both).await
        })
    };
    // The service keeps serving meanwhile.
    for (username, email) in &users {
        assert_eq!(own_email(&during, username).await, *email);
    }
    let output = rotation.await.unwrap();
    let printed = succeeded(&output, "rotate-data-key");
    for what in [
        "re-sealed 3 emails",
        "re-sealed 1 private signing keys",
        "re-sealed 3 addresses of mailed links",
    ] {
        assert!(
            String::from_utf8_lossy(&printed).contains(what),
            "{what}: {}",
            String::from_utf8_lossy(&printed)
        );
    }
    let emails: Vec<String> = users.iter().map(|(_, email)| email.clone()).collect();
    assert_absent(&printed, &emails, "rotate-data-key's output");

    let new_ids = sealing_key_ids(&during).await;
    assert_eq!(new_ids.len(), 5, "four emails and the signing key");
    assert!(
        new_ids.iter().all(|id| *id != old_id),
        "the old key id is gone"
    );
    assert!(new_ids.windows(2).all(|pair| pair[0] == pair[1]), "one key");
    let link_ids = link_key_ids(&during).await;
    assert_eq!(
        link_ids.len(),
        4,
        "each registration mailed a verification link"
    );
    assert!(
        link_ids.iter().all(|id| *id == new_ids[0]),
        "the links' addresses are under the new key"
    );

    // Run again (as after an interruption): nothing is left to do.
    let again = filmvault(during.database.url(), &["rotate-data-key"], &both).await;
    assert!(String::from_utf8_lossy(&succeeded(&again, "rotate-data-key")).contains("re-sealed 0"));

    // Without the old key: every address opens, every index is under the new key, and the
    // signing key opens (each login signs a token with it).
    let after = spawn_app_on(&before.database, &[("DATA_ENCRYPTION_KEY", &new_key)]).await;
    for (username, email) in &users {
        assert_eq!(own_email(&after, username).await, *email);
        after.assert_email_taken(&email.to_lowercase()).await;
    }
}

/// Two instances starting at once on a database full of addresses stored in clear (more
/// than one batch): both start, every row is sealed and indexed, none is left in clear, and
/// both instances find every address taken.
#[tokio::test]
async fn instances_starting_together_seal_the_addresses_stored_in_clear_once() {
    const ROWS: usize = 250;
    let first = spawn_app_with(&[]).await;
    let mut db = first.db().await;
    for i in 0..ROWS {
        db::execute!(
            &mut db,
            "INSERT INTO users (username, legacy_email, password_hash) VALUES ($1, $2, 'x')",
            format!("legacy_{i}"),
            format!("Legacy.{i}@Example.com")
        )
        .await
        .unwrap();
    }
    drop(db);

    let (a, b) = tokio::join!(
        spawn_app_on(&first.database, &[]),
        spawn_app_on(&first.database, &[]),
    );
    let (in_clear, indexed): (i64, i64) = db::fetch_one!(
        &mut a.db().await,
        "SELECT count(legacy_email), count(DISTINCT email_index) FROM users"
    )
    .await
    .unwrap();
    // Every row sealed, and indexed: none was taken for a look-alike of another.
    assert_eq!((in_clear, indexed), (0, ROWS as i64));
    for (app, i) in [(&a, 0), (&b, ROWS - 1)] {
        app.assert_email_taken(&format!("legacy.{i}@example.COM"))
            .await;
    }
}

/// The schema as it was before emails were sealed: every migration older than the sealing
/// one, applied the way the service applies them (the later ones follow it, in order, when
/// the service starts: the sealing rebuilds `users` on SQLite and would drop their columns).
async fn migrate_to_the_schema_before_sealing(database: &TestDatabase) {
    let backend = if database.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let old = tempfile::tempdir().unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    // Migration file names start with their version: the ones before the sealing's.
    const SEALING: &str = "20261129230000";
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        if *path.file_name().unwrap().to_string_lossy() < *SEALING {
            std::fs::copy(&path, old.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    if database.is_postgres() {
        let mut connection = PgConnection::connect(database.url()).await.unwrap();
        migrator.run(&mut connection).await.unwrap();
    } else {
        let options = SqliteConnectOptions::from_str(database.url())
            .unwrap()
            .create_if_missing(true);
        let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
        migrator.run(&mut connection).await.unwrap();
    }
}

/// An installation from before sealing, with accounts, a film and a vote, upgraded: the
/// rebuild of the users table (SQLite) loses and changes nothing that refers to an account,
/// every address is sealed and out of the files, and its owner logs in and sees it.
#[tokio::test]
async fn an_existing_installation_upgrades_with_every_row_kept_and_every_email_sealed() {
    use argon2::{PasswordHasher, password_hash::SaltString};
    let database = TestDatabase::create().await;
    migrate_to_the_schema_before_sealing(&database).await;
    let hash = argon2::Argon2::default()
        .hash_password(
            STRONG_PASSWORD.as_bytes(),
            &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
        )
        .unwrap()
        .to_string();
    let (alice, bob) = (unique_username("alice"), unique_username("bob"));
    let mut db = database.connection().await;
    for (username, email) in [
        (&alice, "Alice.Upgrade@EXAMPLE.com"),
        (&bob, "bob.upgrade@example.com"),
    ] {
        db::execute!(
            &mut db,
            "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3)",
            username,
            email,
            &hash
        )
        .await
        .unwrap();
    }
    let film_id: i64 = db::fetch_scalar!(
        &mut db,
        "INSERT INTO films (name, studio, owner_id)
         SELECT 'Upgrade Day', 'Old Studio', id FROM users WHERE username = $1 RETURNING id",
        &alice
    )
    .await
    .unwrap();
    db::execute!(
        &mut db,
        "INSERT INTO votes (user_id, film_id, value)
         SELECT id, $2, 1 FROM users WHERE username = $1",
        &bob,
        film_id
    )
    .await
    .unwrap();
    drop(db);

    let app = spawn_app_on(&database, &[]).await;
    let film: Value = app
        .get(&format!("/api/v1/films/{film_id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (film["owner"].as_str(), film["likes"].as_i64()),
        (Some(alice.as_str()), Some(1))
    );
    let votes: i64 = db::fetch_scalar!(&mut app.db().await, "SELECT count(*) FROM votes")
        .await
        .unwrap();
    assert_eq!(votes, 1, "the vote outlived the rebuild of users");
    assert_eq!(own_email(&app, &alice).await, "Alice.Upgrade@example.com");
    assert_eq!(own_email(&app, &bob).await, "bob.upgrade@example.com");
    app.assert_email_taken("alice.upgrade@example.com").await;
    let newcomer = unique_username("new");
    register(&app, &newcomer, &distinctive_email("new")).await;
    let token = app.access_token(&newcomer, STRONG_PASSWORD).await;
    let newcomer_id = app.own_id(&token).await;
    assert!(newcomer_id > 2, "ids continue: {newcomer_id}");
    let emails = [
        "Alice.Upgrade@EXAMPLE.com".to_owned(),
        "bob.upgrade@example.com".to_owned(),
    ];
    assert_absent(&stored_bytes(&app).await, &emails, "the upgraded database");
}
