//! Telling a server that is down from a pool that is busy, so that a request fails in half a
//! second when PostgreSQL cannot be reached, yet still waits its turn when every connection
//! is in use.
//!
//! sqlx's pool cannot tell the two apart: while the server refuses connections it retries
//! them until the acquire timeout, exactly as long as it would wait for a busy connection.
//! So a request that has no connection after [`PATIENCE`] asks the server directly, with a
//! connection outside the pool; at most one such probe runs per [`PROBE_EVERY`], and the
//! requests waiting meanwhile share its answer.

use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};
use tokio::sync::Mutex;

/// How long a request waits for a connection before asking whether the server is there.
const PATIENCE: Duration = Duration::from_millis(500);
/// How long a probe's answer holds.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A probe that takes longer proves nothing (a loaded server is slow, not gone).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct Reachability {
    options: PgConnectOptions,
    /// When the last probe ran, and whether the server refused it.
    last: Mutex<Option<(Instant, bool)>>,
}

impl Reachability {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            last: Mutex::new(None),
        }
    }

    /// Runs `acquire` (a connection or a transaction from the pool) to the end, or fails
    /// with `PoolTimedOut` as soon as the server is found to refuse connections.
    pub(super) async fn unless_refused<T>(
        &self,
        acquire: impl Future<Output = sqlx::Result<T>>,
    ) -> sqlx::Result<T> {
        let refused = async {
            loop {
                tokio::time::sleep(PATIENCE).await;
                if self.refuses_connections().await {
                    return;
                }
            }
        };
        tokio::select! {
            result = acquire => result,
            () = refused => Err(sqlx::Error::PoolTimedOut),
        }
    }

    async fn refuses_connections(&self) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, refused)) = *last
            && at.elapsed() < PROBE_EVERY
        {
            return refused;
        }
        let refused = match tokio::time::timeout(PROBE_TIMEOUT, self.options.connect()).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                false
            }
            Ok(Err(error)) => {
                let refused = super::super::is_unreachable(&error);
                if refused {
                    tracing::warn!(%error, "PostgreSQL refuses connections");
                }
                refused
            }
            Err(_) => false,
        };
        *last = Some((Instant::now(), refused));
        refused
    }
}
