//! The SQLite side: a consistent copy of the live database, the checks a copy must pass before
//! it may become the database, and taking a database out of service before it is replaced.

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};

use crate::db::SQLITE_MIGRATIONS;

/// How long the copy waits for a lock it needs (the writer's WAL checkpoint, rarely).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes a copy of `database` to `copy` (which must not exist) while the service goes on
/// writing. `VACUUM INTO` reads inside one read transaction: the copy holds every transaction
/// committed before it began and none after, and no free page (so no leftover of a deleted
/// row) comes along.
pub(super) async fn copy(database: &Path, copy: &Path) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("trusted_schema", "OFF");
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("DATABASE_URL: cannot open {}", database.display()))?;
    let into = copy
        .to_str()
        .context("the working directory's path is not UTF-8")?;
    sqlx::query("VACUUM INTO $1")
        .bind(into)
        .execute(&mut connection)
        .await
        .context("cannot copy the database")?;
    connection.close().await?;
    Ok(())
}

/// What a copy was found to hold.
pub(super) struct Verified {
    pub(super) migrations_applied: usize,
    pub(super) migrations_known: usize,
}

/// Checks `file` as SQLite sees it, without writing anything beside it (immutable: no
/// `-wal`, no `-shm`): every page and index intact, every foreign key resolved, and a
/// filmvault schema, migrated by this build's migrations and no others.
pub(super) async fn verify(file: &Path) -> anyhow::Result<Verified> {
    let options = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .immutable(true)
        .pragma("trusted_schema", "OFF");
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .context("the backup does not hold a SQLite database")?;
    let verified = check(&mut connection).await;
    connection.close().await?;
    verified
}

async fn check(connection: &mut SqliteConnection) -> anyhow::Result<Verified> {
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *connection)
        .await
        .context("the backup does not hold a SQLite database")?;
    if integrity != ["ok"] {
        bail!(
            "refused: the backup's database fails SQLite's integrity check ({})",
            integrity.first().map_or("no answer", String::as_str)
        );
    }
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut *connection)
        .await?
        .len();
    if dangling > 0 {
        bail!("refused: the backup's database has {dangling} rows whose foreign key is missing");
    }
    let applied: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *connection)
            .await
            .unwrap_or_default();
    check_migrations(&applied)
}

/// Every applied migration must be one of this build's, byte for byte: a file from a newer
/// or foreign build would fail when the service starts on it, after the old database is gone.
fn check_migrations(applied: &[(i64, Vec<u8>, bool)]) -> anyhow::Result<Verified> {
    let known: Vec<_> = SQLITE_MIGRATIONS
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .collect();
    if applied.is_empty() {
        bail!("refused: the backup's database is not a filmvault database (no migration history)");
    }
    for (version, checksum, success) in applied {
        let ours = known
            .iter()
            .any(|m| m.version == *version && m.checksum.as_ref() == checksum.as_slice());
        if !ours {
            bail!(
                "refused: the backup's migration {version} is not this build's (the backup comes \
                 from a newer or another build of filmvault; restore it with that build)"
            );
        }
        if !success {
            bail!("refused: the backup's migration {version} did not complete");
        }
    }
    Ok(Verified {
        migrations_applied: applied.len(),
        migrations_known: known.len(),
    })
}

/// Takes the database at `file` out of WAL mode, which SQLite grants only to the one
/// connection that has the file open (the lock for it is never waited for): refused while
/// any server has it open. Done, the WAL's last commits are in the file and its `-wal` and
/// `-shm` are gone, so nothing of them can be replayed onto the file that replaces it.
pub(super) async fn take_out_of_service(file: &Path) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(file)
        .busy_timeout(Duration::ZERO)
        .pragma("trusted_schema", "OFF");
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open the database {} to replace it", file.display()))?;
    let mode: Result<String, _> = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
        .fetch_one(&mut connection)
        .await;
    connection.close().await?;
    match mode {
        Ok(mode) if mode.eq_ignore_ascii_case("delete") => Ok(()),
        Ok(_) => bail!(in_use(file)),
        Err(sqlx::Error::Database(error)) if is_busy(error.code().as_deref()) => {
            bail!(in_use(file))
        }
        Err(error) => Err(error)
            .with_context(|| format!("cannot take the database {} out of service", file.display())),
    }
}

fn in_use(file: &Path) -> String {
    format!(
        "{} is in use: stop every filmvault process on it, then restore again; nothing was \
         changed",
        file.display()
    )
}

/// SQLITE_BUSY or SQLITE_LOCKED, in any of their extended forms.
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}
