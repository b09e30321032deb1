//! The connections to Redis: one multiplexed connection per thread that uses it, each
//! reconnecting by itself; the key prefix, and the bound on every call.
//!
//! Per thread, because a connection's socket is driven by the runtime that opened it: one
//! connection made on the main runtime and used by the actix workers (each a runtime of its
//! own) had every answer taken by the main runtime's thread and handed across to the worker,
//! a wake-up and a context switch per call. Each worker now talks to Redis on its own
//! thread. There are as many connections as threads calling Redis: the workers, the main
//! runtime's threads (background tasks), a handful in all.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use redis::{
    AsyncCommands, Client, FromRedisValue, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use secrecy::{ExposeSecret, SecretString};
use thread_local::ThreadLocal;

use crate::{
    crypto::{Keyring, Pseudonyms},
    security::client_ip::ClientKey,
};

/// The longest a request waits for Redis before it is answered 503.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Redis did not answer (down, unreachable, too slow) or answered an error.
#[derive(Debug, thiserror::Error)]
#[error("Redis is unavailable: {0}")]
pub struct Unavailable(String);

impl Unavailable {
    pub(crate) fn closed() -> Self {
        Self("the connection was closed".to_owned())
    }
}

impl From<redis::RedisError> for Unavailable {
    fn from(error: redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

#[derive(Clone)]
pub struct RedisStore {
    connections: Arc<Connections>,
    prefix: Arc<str>,
    /// How a username appears in a key name.
    usernames: Pseudonyms,
    /// How a client (an address, or an IPv6 network) appears in a key name or a set.
    clients: Pseudonyms,
}

/// How to connect, and each thread's connection once it has one.
struct Connections {
    client: Client,
    config: ConnectionManagerConfig,
    per_thread: ThreadLocal<ConnectionManager>,
}

impl RedisStore {
    /// Prepares the connection without making it: an instance starts (not ready) while
    /// Redis is down, and becomes ready when Redis is back.
    pub fn new(url: &SecretString, prefix: &str, keyring: &Keyring) -> anyhow::Result<Self> {
        let client = Client::open(url.expose_secret())
            .map_err(|_| anyhow::anyhow!("REDIS_URL is not a valid redis:// URL"))?;
        // Commands wait for a reconnection in progress; one quick retry keeps that wait
        // short, and the next command after a failure starts a new attempt.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let store = Self {
            connections: Arc::new(Connections {
                client,
                config,
                per_thread: ThreadLocal::new(),
            }),
            prefix: prefix.into(),
            usernames: keyring.pseudonyms(b"redis key names: username"),
            clients: keyring.pseudonyms(b"redis key names: client"),
        };
        store
            .connection()
            .context("cannot prepare the Redis connection")?;
        Ok(store)
    }

    /// This thread's connection, prepared (not yet made) on its first use here.
    fn connection(&self) -> Result<ConnectionManager, Unavailable> {
        let Connections {
            client,
            config,
            per_thread,
        } = &*self.connections;
        let connection = per_thread.get_or_try(|| {
            ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        })?;
        Ok(connection.clone())
    }

    /// `{prefix}:{name}`: one deployment's keys and channel, whatever else shares the Redis.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// A username as key names carry it (lowercase it first: usernames ignore case): the same
    /// on every instance, and without the data key Redis holds no list of the names tried.
    pub fn username_pseudonym(&self, username: &str) -> String {
        self.usernames.of(username)
    }

    /// A client as key names and the login monitor's sets carry it: Redis, or a copy of it,
    /// holds no list of the addresses that called, failed to log in, or were blocked.
    pub fn client_pseudonym(&self, client: ClientKey) -> String {
        self.clients.of(&client.to_string())
    }

    /// For the dedicated pub/sub connection.
    pub(crate) fn client(&self) -> &Client {
        &self.connections.client
    }

    /// Runs `script` (by its SHA, loading it once) within the call timeout.
    pub async fn run_script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, Unavailable> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = self.connection()?;
        bounded(async move { invocation.invoke_async(&mut connection).await }).await
    }

    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), Unavailable> {
        let mut connection = self.connection()?;
        bounded(async move { connection.publish::<_, _, ()>(channel, message).await }).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), Unavailable> {
        let mut connection = self.connection()?;
        bounded(async move { connection.del::<_, ()>(key).await }).await
    }

    /// Redis answers a PING within the call timeout.
    pub async fn is_ready(&self) -> bool {
        let ping = async {
            let mut connection = self.connection()?;
            bounded(async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
            })
            .await
        };
        match ping.await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "readiness probe: Redis cannot serve");
                false
            }
        }
    }
}

pub(crate) async fn bounded<T>(
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Unavailable> {
    bounded_by(CALL_TIMEOUT, call).await
}

pub(crate) async fn bounded_by<T>(
    limit: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Unavailable> {
    // Boxed: redis's futures are large, and every future that awaits one inline (the
    // rate-limit middleware's, on every request) would be as large, and copied at each move
    // (`perf`: memmove was 17 % of a read's samples on PostgreSQL + Redis, 13 % boxed).
    match tokio::time::timeout(limit, Box::pin(call)).await {
        Ok(result) => result.map_err(Unavailable::from),
        Err(_) => Err(Unavailable("no answer in time".to_owned())),
    }
}

#[cfg(test)]
#[path = "../../tests/support/test_redis.rs"]
#[allow(unsafe_code)] // the test server's death signal, set between fork and exec
mod test_redis;

/// A store on the tests' Redis (see `test_redis`) under a fresh prefix, so tests running at
/// once never share a key; `None` (said on stderr) only on a developer's machine without Redis.
#[cfg(test)]
pub(crate) fn test_store() -> Option<RedisStore> {
    let url = test_redis::test_redis_url()?;
    let prefix = format!("filmvault-test-{}", uuid::Uuid::new_v4().simple());
    let keyring = Keyring::new(&crate::crypto::DataKey::generate(), &[]);
    let store = RedisStore::new(&SecretString::from(url), &prefix, &keyring);
    Some(store.expect("TEST_REDIS_URL is a redis:// URL"))
}
