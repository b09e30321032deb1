//! The PostgreSQL backend: one pool for reads and writes, its embedded migrations.
//!
//! Several instances may start at once on one database: the migrator holds an advisory lock
//! while it runs, so the schema is migrated once.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a connection. While the server is down the pool retries
/// refused connections until then, so this is also how long a request takes to be refused
/// with 503: short, so clients are told to come back rather than left hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a statement waits for a row lock before it fails, as SQLite's `busy_timeout`: a
/// request must not hang behind a stuck transaction.
const LOCK_TIMEOUT: &str = "5s";

#[derive(Clone, Debug)]
pub struct PgDatabase {
    pub(super) pool: PgPool,
}

impl PgDatabase {
    pub(super) async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .with_context(|| "DATABASE_URL is not a valid postgres:// URL")?
            .application_name("filmvault")
            .options([("lock_timeout", LOCK_TIMEOUT)]);
        // Requests wait on the database, not on the CPU: more connections than cores.
        let connections = std::thread::available_parallelism()
            .map_or(8, |n| n.get() * 4)
            .max(8);
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(connections).unwrap_or(16))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Each idle connection is pinged before a request gets it: after a server restart
            // the dead ones are dropped and new ones opened, without a restart of ours.
            .test_before_acquire(true)
            .connect_with(options.clone())
            .await
            .with_context(|| {
                // Never the URL itself: it may hold the password.
                format!(
                    "DATABASE_URL: cannot connect to PostgreSQL at {}:{}, database {}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or("(default)")
                )
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .context("cannot apply the database migrations")?;
        Ok(Self { pool })
    }

    /// A connection answers now, and every migration has been applied.
    pub(super) async fn is_ready(&self) -> bool {
        let probe = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool);
        super::probe_outcome(
            tokio::time::timeout(PROBE_TIMEOUT, probe).await,
            MIGRATOR.iter().count(),
        )
    }
}
