//! The SQLite database: connection settings, the embedded migrations, and the split into one
//! writer and many readers.
//!
//! SQLite allows one writer at a time. With a pool of writers, concurrent transactions collide
//! and back off inside `busy_timeout` (or fail with SQLITE_BUSY when a read turns into a
//! write). A single-connection writer pool queues writers fairly in memory instead, and WAL
//! lets the readers go on while it writes.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Database {
    /// Read-only connections: a query that tries to write through them fails.
    pub reader: SqlitePool,
    /// The one connection that writes.
    pub writer: SqlitePool,
}

impl Database {
    /// Opens (creating if missing) the database at `url` and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| "DATABASE_URL is not a valid sqlite:// URL")?
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a crash or kill -9 of this
            // process (it is in the WAL, handed to the OS); only an OS crash or power loss
            // can lose the last commits. FULL would fsync every commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Schema objects cannot call application-defined functions: defence against a
            // tampered database file.
            .pragma("trusted_schema", "OFF");

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone().create_if_missing(true))
            .await
            .context("cannot open the database")?;
        MIGRATOR
            .run(&writer)
            .await
            .context("cannot apply the database migrations")?;

        let readers = std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .max(4);
        let reader = SqlitePoolOptions::new()
            .max_connections(u32::try_from(readers).unwrap_or(8))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .context("cannot open read-only connections to the database")?;

        Ok(Self { reader, writer })
    }

    /// Ready means: the file answers a query and every migration we embed has been applied.
    pub async fn is_ready(&self) -> bool {
        let applied: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.reader)
                .await;
        matches!(applied, Ok(n) if usize::try_from(n).ok() == Some(MIGRATOR.iter().count()))
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
