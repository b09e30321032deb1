//! Telling a server that is down from a pool that is busy, so that a request fails in half a
//! second when PostgreSQL cannot be reached, yet still waits its turn when every connection
//! is in use.
//!
//! sqlx's pool cannot tell the two apart: while the server refuses connections it retries
//! them until the acquire timeout, exactly as long as it would wait for a busy connection.
//! So a request that has no connection after [`PATIENCE`] asks the server, on a connection
//! of this module's own outside the pool. At most one probe starts per [`PROBE_EVERY`],
//! whoever asks, and it runs to its end even if the request that started it is gone: under
//! load, when many requests wait, probes must not add to it. The probe pings its open
//! connection (one round trip); it only reconnects (a handshake and a SCRAM exchange) when
//! the ping fails, that is around an outage.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{ConnectOptions, Connection, PgConnection, postgres::PgConnectOptions};

/// How long a request waits for a connection before asking whether the server is there.
const PATIENCE: Duration = Duration::from_millis(500);
/// How long a probe's answer holds.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A probe that takes longer proves nothing (a loaded server is slow, not gone).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct Reachability {
    options: PgConnectOptions,
    last: Mutex<LastProbe>,
    /// The probes' connection, opened by the first probe; one probe at a time uses it.
    connection: tokio::sync::Mutex<Option<PgConnection>>,
}

#[derive(Debug, Default)]
struct LastProbe {
    started: Option<Instant>,
    /// The answer of the last probe that finished.
    refused: bool,
}

impl Reachability {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            last: Mutex::default(),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs `acquire` (a connection or a transaction from the pool) to the end, or fails
    /// with `PoolTimedOut` as soon as the server is found to refuse connections.
    pub(super) async fn unless_refused<T>(
        self: &Arc<Self>,
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

    async fn refuses_connections(self: &Arc<Self>) -> bool {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.started.is_some_and(|at| at.elapsed() < PROBE_EVERY) {
                return last.refused;
            }
            last.started = Some(Instant::now());
        }
        let this = Arc::clone(self);
        let probe = tokio::spawn(async move {
            let refused = this.probe().await;
            this.last.lock().unwrap_or_else(|e| e.into_inner()).refused = refused;
            refused
        });
        probe.await.unwrap_or(false)
    }

    async fn probe(&self) -> bool {
        let mut connection = self.connection.lock().await;
        if let Some(open) = connection.as_mut() {
            if let Ok(Ok(())) = tokio::time::timeout(PROBE_TIMEOUT, open.ping()).await {
                return false;
            }
            // Broken, or cut off mid-ping: not to be used again.
            *connection = None;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.options.connect()).await {
            Ok(Ok(fresh)) => {
                *connection = Some(fresh);
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
        }
    }
}
