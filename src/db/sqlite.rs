//! The SQLite backend: connection settings, its embedded migrations, and the split into one
//! writer and many readers (see the module above for why).

use std::{
    path::Path,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use sqlx::{
    Connection, SqliteConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a start waits for another process's write lock before it migrates: instances
/// starting together on a new file apply every migration one after the other, which on a
/// loaded machine takes longer than one request's `BUSY_TIMEOUT`.
const WAIT_LONGER_TO_MIGRATE: &str = "PRAGMA busy_timeout = 60000";
/// How long a start keeps trying to open a file that other instances are opening too.
const KEEP_TRYING_TO_OPEN: Duration = Duration::from_secs(30);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct SqliteDatabase {
    /// Read-only connections: a query that tries to write through them fails.
    pub(super) reader: SqlitePool,
    /// The one connection that writes.
    pub(super) writer: SqlitePool,
    /// How the readiness probe opens a fresh connection (read-only, never creating the file):
    /// pooled connections keep working on a file that has since been removed or replaced.
    probe: Arc<SqliteConnectOptions>,
}

/// SQLite creates the file but not its directory, and would only say "unable to open
/// database file".
fn check_directory(file: &Path) -> anyhow::Result<()> {
    match file.parent() {
        Some(directory) if !directory.as_os_str().is_empty() && !directory.is_dir() => {
            anyhow::bail!(
                "DATABASE_URL: the directory {} does not exist; create it, or point \
                 DATABASE_URL at a file in an existing directory",
                directory.display()
            )
        }
        _ => Ok(()),
    }
}

/// Applies the migrations the file lacks, all in one write transaction: instances starting
/// together on one file wait for the first (within `busy_timeout`) and find them applied.
/// (sqlx takes no lock of its own on SQLite; each migration becomes a savepoint.)
///
/// Foreign keys are off meanwhile, as SQLite asks for a table rebuild (a migration that drops
/// a table others refer to would otherwise cascade the DROP to their rows), and every one is
/// checked before the commit: a migration that breaks one is rolled back whole. The
/// connection is closed afterwards, whatever happened, so the pool opens a new one with
/// foreign keys on.
async fn migrate(writer: &SqlitePool) -> anyhow::Result<()> {
    let mut connection = writer.acquire().await?;
    connection.close_on_drop();
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *connection)
        .await?;
    sqlx::query(WAIT_LONGER_TO_MIGRATE)
        .execute(&mut *connection)
        .await?;
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    MIGRATOR.run(&mut *tx).await?;
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&mut *tx)
        .await?;
    if let Some((table,)) = broken.first() {
        anyhow::bail!("the migrations would leave a broken foreign key in {table}");
    }
    tx.commit().await?;
    Ok(())
}

/// Opens the one writing connection. Instances starting together on a new file all switch it
/// to WAL, and SQLite answers all but one "database is locked" at once, without waiting out
/// the busy timeout (its busy handler is not called for that lock), so a start tries again
/// for a while.
async fn open_writer(options: SqliteConnectOptions) -> sqlx::Result<SqlitePool> {
    let deadline = Instant::now() + KEEP_TRYING_TO_OPEN;
    let mut pause = Duration::from_millis(10);
    loop {
        let opened = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await;
        match opened {
            Err(error) if is_locked(&error) && Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            outcome => return outcome,
        }
    }
}

/// SQLITE_BUSY, or one of its extended codes (the low byte is the primary code).
fn is_locked(error: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    error
        .as_database_error()
        .and_then(|error| error.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

impl SqliteDatabase {
    /// Opens (creating if missing) the database at `url` and applies pending migrations.
    pub(super) async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| "DATABASE_URL is not a valid sqlite:// URL")?;
        check_directory(options.get_filename())?;
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a crash or kill -9 of this
            // process (it is in the WAL, handed to the OS); only an OS crash or power loss
            // can lose the last commits. FULL would fsync every commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Schema objects cannot call application-defined functions: defence against a
            // tampered database file.
            .pragma("trusted_schema", "OFF")
            // Checkpoint every ~40 MB of WAL instead of ~4 MB: hot pages (index roots, the
            // audit table's last page) are copied back once per checkpoint, not once per
            // thousand commits. Costs disk for the WAL file, not durability.
            .pragma("wal_autocheckpoint", "10000")
            // 512 KiB of pages per connection instead of SQLite's 2 MiB: the pages a request
            // touches again (index roots, the tables' last pages) fit, and the rest is in the
            // kernel's page cache, one `pread` away. Five connections at 2 MiB were a sixth of
            // the process's memory after the benchmark's writes.
            .pragma("cache_size", "-512");

        let writer = open_writer(options.clone().create_if_missing(true))
            .await
            .with_context(|| {
                format!(
                    "DATABASE_URL: cannot open the database {}",
                    options.get_filename().display()
                )
            })?;
        migrate(&writer)
            .await
            .context("cannot apply the database migrations")?;

        let readers = std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .max(4);
        let read_only = options.read_only(true);
        let reader = SqlitePoolOptions::new()
            .max_connections(u32::try_from(readers).unwrap_or(8))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(read_only.clone())
            .await
            .context("cannot open read-only connections to the database")?;

        Ok(Self {
            reader,
            writer,
            probe: Arc::new(read_only),
        })
    }

    /// The database file can be opened now, and every migration has been applied to it.
    pub(super) async fn is_ready(&self) -> bool {
        let probe = async {
            let mut connection = SqliteConnection::connect_with(&self.probe).await?;
            let applied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut connection)
                    .await?;
            connection.close().await?;
            Ok::<_, sqlx::Error>(applied)
        };
        super::probe_outcome(
            tokio::time::timeout(PROBE_TIMEOUT, probe).await,
            MIGRATOR.iter().count(),
        )
    }

    pub(super) async fn scrub(&self) -> sqlx::Result<()> {
        let mut writer = self.writer.acquire().await?;
        sqlx::query("VACUUM").execute(&mut *writer).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *writer)
            .await?;
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
