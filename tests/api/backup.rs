//! `filmvault backup` and `filmvault restore` as an operator runs them (the real binary) next
//! to a serving app: a backup under concurrent writes holds every write acknowledged before
//! it began, and a restore refuses a tampered, cut, wrongly keyed or unkeyed backup without
//! touching its target. Backups are of SQLite; on PostgreSQL both commands refuse.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use age::secrecy::ExposeSecret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, output_of, spawn_app_on};

const PASSPHRASE: &str = "tidal-orchard-lantern-93";

/// The binary with `args` on the database at `database_url`, with nothing else in its
/// environment but `env`, in a directory with no `.env` (`output_of`: the app under test keeps
/// serving meanwhile).
async fn filmvault(args: &[&str], database_url: &str, env: &[(&str, &str)]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_filmvault"));
    command
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(empty.path());
    output_of(command, "").await
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An age identity made for the test: its file (for restore) and its public key (for backup).
struct AgeKey {
    identity_file: PathBuf,
    recipient: String,
    _dir: tempfile::TempDir,
}

fn age_key() -> AgeKey {
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("backup-identity.txt");
    std::fs::write(
        &identity_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    AgeKey {
        identity_file,
        recipient: identity.to_public().to_string(),
        _dir: dir,
    }
}

/// A SQLite database with a serving app on it; `None` on PostgreSQL (whose refusal has its own
/// test).
async fn sqlite_app() -> Option<(Arc<TestDatabase>, TestApp)> {
    let database = TestDatabase::create().await;
    if database.is_postgres() {
        return None;
    }
    let app = spawn_app_on(&database, &[]).await;
    Some((database, app))
}

/// Films the writers had created when asked, in order of acknowledgement.
type Acknowledged = Arc<Mutex<Vec<(i64, String)>>>;

/// Four writers creating films on `app` until `stop`; each 201 is recorded once received.
fn start_writers(app: &Arc<TestApp>, token: &str, stop: &Arc<AtomicBool>) -> Acknowledged {
    let acknowledged = Acknowledged::default();
    for writer in 0..4 {
        let (app, token, stop, acknowledged) = (
            app.clone(),
            token.to_owned(),
            stop.clone(),
            acknowledged.clone(),
        );
        tokio::spawn(async move {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("backed-up film {writer}-{i}");
                let response = app
                    .post_json(
                        "/api/v1/films",
                        &json!({ "name": name, "studio": "Snapshot" }),
                        Some(&token),
                    )
                    .await;
                assert_eq!(response.status(), StatusCode::CREATED);
                let film: Value = response.json().await.unwrap();
                acknowledged
                    .lock()
                    .unwrap()
                    .push((film["id"].as_i64().unwrap(), name));
            }
        });
    }
    acknowledged
}

fn count(acknowledged: &Acknowledged) -> usize {
    acknowledged.lock().unwrap().len()
}

/// Backs up while four writers go on creating films, restores into a fresh file, starts an
/// app on it, and finds there every film acknowledged before the backup began, and none
/// acknowledged after it ended.
async fn backup_under_writes_restores_every_acknowledged_film(
    backup_env: &[(&str, &str)],
    restore_env: &[(&str, &str)],
) {
    let Some((database, app)) = sqlite_app().await else {
        return;
    };
    let app = Arc::new(app);
    let user = app.new_user().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = start_writers(&app, &user.token, &stop);
    for _ in 0..3000 {
        if count(&acknowledged) >= 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("filmvault.age");
    let file_arg = file.to_str().unwrap();

    let before: Vec<(i64, String)> = acknowledged.lock().unwrap().clone();
    assert!(before.len() >= 40, "the writers write");
    let backup = filmvault(&["backup", "--out", file_arg], database.url(), backup_env).await;
    let when_done = count(&acknowledged);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let all: Vec<(i64, String)> = acknowledged.lock().unwrap().clone();

    assert!(backup.status.success(), "backup: {}", stderr(&backup));
    assert!(
        when_done > before.len(),
        "writes went on while the backup ran"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the backup file is private");
    let encrypted = std::fs::read(&file).unwrap();
    assert!(encrypted.starts_with(b"age-encryption.org/v1\n"));
    for plaintext in [
        &b"backed-up film"[..],
        b"SQLite format 3",
        user.username.as_bytes(),
    ] {
        assert!(
            !encrypted.windows(plaintext.len()).any(|w| w == plaintext),
            "the backup holds plaintext"
        );
    }
    let beside_database = std::fs::read_dir(database.sqlite_path().unwrap().parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.starts_with("filmvault.db"))
        .collect::<Vec<_>>();
    assert_eq!(
        beside_database,
        Vec::<String>::new(),
        "no working copy left"
    );

    let fresh = TestDatabase::create().await;
    let restore = filmvault(&["restore", "--from", file_arg], fresh.url(), restore_env).await;
    assert!(restore.status.success(), "restore: {}", stderr(&restore));
    let restored = spawn_app_on(&fresh, &[]).await;
    for (id, name) in &before {
        let response = restored.get(&format!("/api/v1/films/{id}"), None).await;
        assert_eq!(response.status(), StatusCode::OK, "film {id} was lost");
        let film: Value = response.json().await.unwrap();
        assert_eq!(film["name"], name.as_str());
    }
    for (id, _) in &all[when_done..] {
        let response = restored.get(&format!("/api/v1/films/{id}"), None).await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "film {id}, created after the backup ended, is in it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_to_age_recipients_under_concurrent_writes_restores_every_acknowledged_film() {
    let key = age_key();
    let other = age_key();
    let recipients = format!("{},{}", other.recipient, key.recipient);
    backup_under_writes_restores_every_acknowledged_film(
        &[("BACKUP_RECIPIENTS", &recipients)],
        &[("BACKUP_IDENTITY_FILE", key.identity_file.to_str().unwrap())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_with_a_passphrase_under_concurrent_writes_restores_every_acknowledged_film() {
    backup_under_writes_restores_every_acknowledged_film(
        &[("BACKUP_PASSPHRASE", PASSPHRASE)],
        &[("BACKUP_PASSPHRASE", PASSPHRASE)],
    )
    .await;
}

/// A passphrase backup of a database with a film in it, and a restored copy of it (no app on
/// it) that the refused restores below try to replace.
struct Restorable {
    backup: PathBuf,
    target: Arc<TestDatabase>,
    _dir: tempfile::TempDir,
}

async fn restorable() -> Option<Restorable> {
    let (database, app) = sqlite_app().await?;
    let user = app.new_user().await;
    app.create_film(&user.token, "Kept As It Was", "Restore")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("filmvault.age");
    let env = [("BACKUP_PASSPHRASE", PASSPHRASE)];
    let made = filmvault(
        &["backup", "--out", backup.to_str().unwrap()],
        database.url(),
        &env,
    )
    .await;
    assert!(made.status.success(), "{}", stderr(&made));
    let target = TestDatabase::create().await;
    let restored = filmvault(
        &["restore", "--from", backup.to_str().unwrap()],
        target.url(),
        &env,
    )
    .await;
    assert!(restored.status.success(), "{}", stderr(&restored));
    Some(Restorable {
        backup,
        target,
        _dir: dir,
    })
}

/// Every file in the target's directory, with its contents.
fn directory_contents(database: &TestDatabase) -> Vec<(String, Vec<u8>)> {
    let dir = database.sqlite_path().unwrap().parent().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// `restore --force` of `file` into the target: refused with `reason`, the target's directory
/// byte for byte as it was.
async fn assert_refused(restorable: &Restorable, file: &Path, env: &[(&str, &str)], reason: &str) {
    let before = directory_contents(&restorable.target);
    let output = filmvault(
        &["restore", "--force", "--from", file.to_str().unwrap()],
        restorable.target.url(),
        env,
    )
    .await;
    assert!(!output.status.success(), "restored: {}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains(reason), "{reason:?} not in: {message}");
    assert!(!message.contains(PASSPHRASE), "the passphrase is echoed");
    assert!(
        directory_contents(&restorable.target) == before,
        "the target changed ({message})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_backup_is_refused_and_the_target_is_unchanged() {
    let Some(restorable) = restorable().await else {
        return;
    };
    let original = std::fs::read(&restorable.backup).unwrap();
    let header_end = original.windows(4).position(|w| w == b"\n---").unwrap();
    for (offset, reason) in [
        // The header (a stanza, then its MAC), then the payload's first and last chunks.
        (header_end / 2, "refused: "),
        (header_end + 8, "refused: "),
        (header_end + 200, "refused: the backup was changed"),
        (original.len() - 5, "refused: the backup was changed"),
    ] {
        let mut tampered = original.clone();
        tampered[offset] ^= 0x01;
        let file = restorable
            .backup
            .with_file_name(format!("tampered-{offset}.age"));
        std::fs::write(&file, tampered).unwrap();
        let env = [("BACKUP_PASSPHRASE", PASSPHRASE)];
        assert_refused(&restorable, &file, &env, reason).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_backup_is_refused_wherever_it_was_cut() {
    let Some(restorable) = restorable().await else {
        return;
    };
    let original = std::fs::read(&restorable.backup).unwrap();
    // Inside the header, inside a chunk, and exactly after the first 64 KiB chunk (16-byte
    // tag), where nothing but age's last-chunk mark tells a cut file from a whole one.
    let mac_line = original.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    let header_len = mac_line
        + original[mac_line..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap()
        + 1;
    let first_chunk_end = header_len + 16 + 65536 + 16; // nonce, chunk, tag
    for (length, reason) in [
        (30, "refused: "),
        (original.len() / 2, "refused: "),
        (first_chunk_end, "refused: the backup is truncated"),
        (original.len() - 1, "refused: "),
    ] {
        assert!(length < original.len(), "the backup is over one chunk long");
        let file = restorable
            .backup
            .with_file_name(format!("cut-{length}.age"));
        std::fs::write(&file, &original[..length]).unwrap();
        let env = [("BACKUP_PASSPHRASE", PASSPHRASE)];
        assert_refused(&restorable, &file, &env, reason).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_or_identity_is_refused_and_the_target_is_unchanged() {
    let Some(restorable) = restorable().await else {
        return;
    };
    let stranger = age_key();
    let file = restorable.backup.clone();
    assert_refused(
        &restorable,
        &file,
        &[("BACKUP_PASSPHRASE", "tidal-orchard-lantern-94")],
        "refused: the passphrase does not open this backup",
    )
    .await;
    assert_refused(
        &restorable,
        &file,
        &[(
            "BACKUP_IDENTITY_FILE",
            stranger.identity_file.to_str().unwrap(),
        )],
        "refused: no identity in BACKUP_IDENTITY_FILE opens this backup",
    )
    .await;
    assert_refused(
        &restorable,
        &file,
        &[],
        "set BACKUP_IDENTITY_FILE (the age identity whose public key was in BACKUP_RECIPIENTS) \
         or BACKUP_PASSPHRASE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_without_a_key_or_passphrase_is_refused_and_writes_nothing() {
    let Some((database, _app)) = sqlite_app().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("filmvault.age");
    let output = filmvault(
        &["backup", "--out", out.to_str().unwrap()],
        database.url(),
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output)
            .contains("set BACKUP_RECIPIENTS (age public keys, age1…) or BACKUP_PASSPHRASE"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_keeps_a_database_with_data_unless_forced_and_never_one_in_use() {
    let Some(restorable) = restorable().await else {
        return;
    };
    let file = restorable.backup.clone();
    let env = [("BACKUP_PASSPHRASE", PASSPHRASE)];
    let before = directory_contents(&restorable.target);
    let unforced = filmvault(
        &["restore", "--from", file.to_str().unwrap()],
        restorable.target.url(),
        &env,
    )
    .await;
    assert!(!unforced.status.success());
    assert!(
        stderr(&unforced).contains("already holds a database"),
        "{}",
        stderr(&unforced)
    );
    assert!(directory_contents(&restorable.target) == before);

    // A server on it: even --force is refused, and the server goes on with its data.
    let serving = spawn_app_on(&restorable.target, &[]).await;
    let user = serving.new_user().await;
    let film = serving
        .create_film(&user.token, "Written Since", "Restore")
        .await;
    let forced = filmvault(
        &["restore", "--force", "--from", file.to_str().unwrap()],
        restorable.target.url(),
        &env,
    )
    .await;
    assert!(!forced.status.success());
    assert!(
        stderr(&forced).contains("is in use: stop every filmvault process"),
        "{}",
        stderr(&forced)
    );
    let still_there = serving
        .get(&format!("/api/v1/films/{}", film["id"]), None)
        .await;
    assert_eq!(still_there.status(), StatusCode::OK);
    let leftovers = directory_contents(&restorable.target)
        .into_iter()
        .filter(|(name, _)| !name.starts_with("filmvault.db"))
        .count();
    assert_eq!(leftovers, 0, "the refused restore left a file behind");
}

#[tokio::test]
async fn on_postgresql_backup_and_restore_refuse_and_point_at_the_docs() {
    let postgres = "postgres://filmvault@127.0.0.1:1/filmvault";
    let env = [("BACKUP_PASSPHRASE", PASSPHRASE)];
    for args in [
        ["backup", "--out", "filmvault.age"],
        ["restore", "--from", "filmvault.age"],
    ] {
        let output = filmvault(&args, postgres, &env).await;
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(
            message.contains("pg_dump") && message.contains("docs/backup.md"),
            "{message}"
        );
    }
}
