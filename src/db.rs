//! Storage: SQLite or PostgreSQL, chosen by `DATABASE_URL` when the service starts, behind one
//! interface. The domain writes each statement once and never learns which backend runs it.
//!
//! # Why an enum over the native drivers
//!
//! * [`Database`] holds either backend's pools; [`Connection`] and [`Transaction`] hold
//!   either driver's connection. The statement macros ([`fetch_one!`](crate::db::fetch_one)
//!   and the others in [`statement`]) type and bind one literal for each driver and run it
//!   on the one the executor holds. Where the dialects agree (almost everywhere: both take
//!   `$1` parameters, `RETURNING`, `ON CONFLICT`) the SQL is written once; where they differ
//!   (row locks, a few functions) the call gives both, side by side.
//! * Not sqlx's `Any` driver: it converts every argument and every row through its own value
//!   type on each call, knows no time type, and would take SQLite's one-writer split and
//!   pragmas away. The SQLite mode is the benchmarked one; it keeps its native driver.
//! * Not a storage trait with one implementation per backend: every statement would be
//!   written twice, and the two copies would drift.
//!
//! # SQLite
//!
//! SQLite allows one writer at a time. With a pool of writers, concurrent transactions collide
//! and back off inside `busy_timeout` (or fail with SQLITE_BUSY when a read turns into a
//! write). A single-connection writer pool queues writers fairly in memory instead, and WAL
//! lets the readers go on while it writes. A write transaction starts with `BEGIN IMMEDIATE`:
//! it holds the database's write lock from its first statement, so every check it makes
//! stays true until it commits.
//!
//! # PostgreSQL
//!
//! One pool serves reads and writes, for any number of instances. Transactions run at READ
//! COMMITTED; what SQLite's single writer gives for free is made explicit where a decision
//! depends on rows another instance may change at the same moment: a row lock
//! (`SELECT … FOR NO KEY UPDATE`, written beside the SQLite statement) or a [`Lock`] taken
//! with [`Transaction::lock`]. docs/storage.md lists each case and its test.

mod postgres;
mod sqlite;
pub mod statement;
mod timestamp;

use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, pool::PoolConnection};

/// What a restored SQLite file must have been migrated with (`backup::snapshot`).
pub(crate) use self::sqlite::MIGRATOR as SQLITE_MIGRATIONS;
pub use self::{
    statement::{
        execute, fetch_all, fetch_one, fetch_optional, fetch_optional_scalar, fetch_scalar,
        fetch_scalars,
    },
    timestamp::Timestamp,
};

#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(sqlite::SqliteDatabase),
    Postgres(postgres::PgDatabase),
}

impl Database {
    /// Opens the database `url` names (`sqlite://…`, created if missing, or `postgres://…`)
    /// and applies the migrations it lacks.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::PgDatabase::connect(url).await.map(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            sqlite::SqliteDatabase::connect(url).await.map(Self::Sqlite)
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://")
        }
    }

    /// A connection for reads (on SQLite, a read-only one: a write through it fails).
    pub async fn read(&self) -> sqlx::Result<Connection> {
        Ok(match self {
            Self::Sqlite(db) => Connection::Sqlite(db.reader.acquire().await?),
            Self::Postgres(db) => Connection::Postgres(db.acquire().await?),
        })
    }

    /// A connection for a write that is one statement, atomic on its own.
    pub async fn write(&self) -> sqlx::Result<Connection> {
        Ok(match self {
            Self::Sqlite(db) => Connection::Sqlite(db.writer.acquire().await?),
            Self::Postgres(db) => Connection::Postgres(db.acquire().await?),
        })
    }

    /// A write transaction; dropped without [`Transaction::commit`], it rolls back.
    pub async fn begin(&self) -> sqlx::Result<Transaction> {
        Ok(match self {
            Self::Sqlite(db) => Transaction::Sqlite(db.writer.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(db) => Transaction::Postgres(db.begin().await?),
        })
    }

    /// Ready means: the database answers now, and every migration embedded for its backend
    /// has been applied to it.
    pub async fn is_ready(&self) -> bool {
        match self {
            Self::Sqlite(db) => db.is_ready().await,
            Self::Postgres(db) => db.is_ready().await,
        }
    }

    /// Each pool's use, for the metrics.
    pub fn pools(&self) -> Vec<PoolUsage> {
        fn usage<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> PoolUsage {
            PoolUsage {
                name,
                open: pool.size(),
                idle: pool.num_idle(),
            }
        }
        match self {
            Self::Sqlite(db) => vec![usage("reader", &db.reader), usage("writer", &db.writer)],
            Self::Postgres(db) => vec![usage("postgres", &db.pool)],
        }
    }

    /// Clears deleted rows' bytes out of the database's files, after values were replaced by
    /// sealed ones. SQLite keeps them in freed pages and in the WAL until overwritten: the
    /// file is rebuilt (`VACUUM`) and the WAL emptied. PostgreSQL's dead tuples and WAL are
    /// the operator's to clear (docs/security.md): nothing here can do it without blocking
    /// every other instance.
    pub async fn scrub(&self) -> sqlx::Result<()> {
        if let Self::Sqlite(db) = self {
            db.scrub().await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(db) => db.close().await,
            Self::Postgres(db) => db.close().await,
        }
    }
}

/// The database cannot be reached now, through no fault of the request: a connection
/// refused, reset or closed (`Io`), no connection to be had before the pool's deadline, or
/// PostgreSQL shutting down or starting up (SQLSTATE 57P01 to 57P03) or reporting a broken
/// connection (class 08). Each ends by itself when the server is back.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Ready if the probe counted `expected` applied migrations in time; logs why not otherwise.
fn probe_outcome(
    probe: Result<sqlx::Result<i64>, tokio::time::error::Elapsed>,
    expected: usize,
) -> bool {
    match probe {
        Ok(Ok(applied)) => usize::try_from(applied).ok() == Some(expected),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness probe: the database cannot serve");
            false
        }
        Err(_) => {
            tracing::warn!("readiness probe: the database did not answer in time");
            false
        }
    }
}

pub struct PoolUsage {
    pub name: &'static str,
    pub open: u32,
    pub idle: usize,
}

/// A pooled connection; back to its pool when dropped.
pub enum Connection {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

pub enum Transaction {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Transaction {
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }

    /// Waits until no other transaction, from this instance or another, holds `lock`, and
    /// holds it until this one ends. On SQLite there is nothing to wait for: a write
    /// transaction already excludes every other writer.
    pub async fn lock(&mut self, lock: Lock) -> sqlx::Result<()> {
        if let Self::Postgres(tx) = self {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock.key())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// Changes that must not run side by side on PostgreSQL because what they check spans many
/// rows, which row locks cannot cover (transaction-scoped advisory locks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Role and disabled changes, account deletions: the last-active-admin rule counts every
    /// admin.
    AccountAdministration,
    /// Seeding the demo catalogue into an empty database: several instances may start at once.
    DemoCatalogue,
    /// Setting email blind indexes (registration, sealing at start, key rotation): during a
    /// rotation uniqueness spans two indexes per address, which one UNIQUE cannot cover.
    EmailIndex,
}

impl Lock {
    /// Advisory-lock keys share one space per database with any other application's; these
    /// spell "filmvlt" in their high bytes, so a clash is unlikely.
    fn key(self) -> i64 {
        const BASE: i64 = 0x6669_6c6d_766c_7400;
        match self {
            Self::AccountAdministration => BASE + 1,
            Self::DemoCatalogue => BASE + 2,
            Self::EmailIndex => BASE + 3,
        }
    }
}

/// Anything a statement runs on: a [`Connection`] or an open [`Transaction`].
pub trait Executor: Send {
    fn connection(&mut self) -> Conn<'_>;
}

/// The driver's connection inside an [`Executor`], for the statement macros.
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Executor for Connection {
    fn connection(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(connection) => Conn::Sqlite(connection),
            Self::Postgres(connection) => Conn::Postgres(connection),
        }
    }
}

impl Executor for Transaction {
    fn connection(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(tx) => Conn::Sqlite(tx),
            Self::Postgres(tx) => Conn::Postgres(tx),
        }
    }
}
