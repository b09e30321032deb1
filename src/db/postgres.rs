//! The PostgreSQL backend: one pool for reads and writes, its embedded migrations.
//!
//! Several instances may start at once on one database: the migrator holds an advisory lock
//! while it runs, so the schema is migrated once.

mod reachability;

use std::{str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use futures_util::future::BoxFuture;
use sqlx::{
    PgPool, Postgres,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use self::reachability::Reachability;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a busy pool. A server that refuses connections fails it
/// sooner, in about half a second (see `reachability`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a statement waits for a row lock before it fails, as SQLite's `busy_timeout`: a
/// request must not hang behind a stuck transaction.
const LOCK_TIMEOUT: &str = "5s";

#[derive(Clone, Debug)]
pub struct PgDatabase {
    pub(super) pool: PgPool,
    /// The readiness probe's own connection: when every pooled connection is busy, the
    /// instance is loaded, not unready, and a probe queued behind the requests would time out
    /// and have the load balancer take a busy instance out, piling its load on the others.
    /// The price: a pool whose connections are all stuck still reports ready; its requests
    /// time out after `ACQUIRE_TIMEOUT` with a 503 each.
    probe: PgPool,
    reachability: Arc<Reachability>,
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
        let probe = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(PROBE_TIMEOUT)
            .test_before_acquire(true)
            .connect_lazy_with(options.clone());
        Ok(Self {
            pool,
            probe,
            reachability: Arc::new(Reachability::new(options)),
        })
    }

    /// A connection from the pool, or `PoolTimedOut` soon if the server is down.
    ///
    /// Boxed, as `begin`: waiting for a connection may mean opening one (and probing the
    /// server), 8 KiB of state that every future awaiting a connection would otherwise carry
    /// by value, up through each middleware's, for the whole request and on SQLite too
    /// (measured: 300 logins in flight held 25 MiB of request futures).
    pub(super) fn acquire(&self) -> BoxFuture<'_, sqlx::Result<PoolConnection<Postgres>>> {
        Box::pin(self.reachability.unless_refused(self.pool.acquire()))
    }

    /// A transaction on a pooled connection, or `PoolTimedOut` soon if the server is down.
    pub(super) fn begin(
        &self,
    ) -> BoxFuture<'_, sqlx::Result<sqlx::Transaction<'static, Postgres>>> {
        Box::pin(self.reachability.unless_refused(self.pool.begin()))
    }

    pub(super) async fn close(&self) {
        self.probe.close().await;
        self.pool.close().await;
    }

    /// The probe's connection answers now, and every migration has been applied.
    pub(super) async fn is_ready(&self) -> bool {
        let probe = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.probe);
        super::probe_outcome(
            tokio::time::timeout(PROBE_TIMEOUT, probe).await,
            MIGRATOR.iter().count(),
        )
    }
}
