//! The suspicious-login monitor's counters and locks in Redis (`login_failures.lua`), so a
//! guess spread over instances counts once and a lock made on one instance holds on all.
//!
//! Usernames and clients appear in keys and sets only as keyed hashes
//! (`RedisStore::username_pseudonym`, `client_pseudonym`): keys stay short whatever was
//! submitted, and Redis holds no list of the names people tried nor of the addresses they
//! tried them from.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{
    cluster::{RedisStore, Unavailable},
    config::SuspiciousLoginSettings,
    security::client_ip::ClientKey,
};

static RECORD_FAILURE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("login_failures.lua")));
static LOCK_REMAINING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("login_lock.lua")));

/// What one failure found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Distinct clients that failed for the username within the window.
    pub clients: usize,
    /// Distinct usernames that failed from the client within the window.
    pub usernames: usize,
    /// This failure locked the username (it was not locked before).
    pub username_locked: bool,
    /// This failure blocked the client (it was not blocked before).
    pub client_blocked: bool,
}

#[derive(Clone)]
pub struct SharedLoginFailures {
    store: RedisStore,
    settings: SuspiciousLoginSettings,
}

impl SharedLoginFailures {
    pub fn new(store: RedisStore, settings: SuspiciousLoginSettings) -> Self {
        Self { store, settings }
    }

    /// `user`: the username's pseudonym; `client`: the client's.
    fn keys(&self, user: &str, client: &str) -> [String; 4] {
        [
            self.store.key(&format!("login:failures:user:{user}")),
            self.store.key(&format!("login:failures:client:{client}")),
            self.store.key(&format!("login:lock:user:{user}")),
            self.store.key(&format!("login:lock:client:{client}")),
        ]
    }

    /// How long the username stays locked or the client blocked, if either is.
    pub async fn locked_for(
        &self,
        username: &str,
        client: ClientKey,
    ) -> Result<Option<Duration>, Unavailable> {
        let user = self.store.username_pseudonym(username);
        let client = self.store.client_pseudonym(client);
        let [_, _, user_lock, client_lock] = self.keys(&user, &client);
        let remaining_ms: u64 = self
            .store
            .run_script(&LOCK_REMAINING, &[&user_lock, &client_lock], &[])
            .await?;
        Ok((remaining_ms > 0).then(|| Duration::from_millis(remaining_ms)))
    }

    pub async fn record_failure(
        &self,
        username: &str,
        client: ClientKey,
    ) -> Result<FailureCount, Unavailable> {
        let user = self.store.username_pseudonym(username);
        let client = self.store.client_pseudonym(client);
        let keys = self.keys(&user, &client);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let settings = &self.settings;
        let args = [
            client,
            user,
            settings.window.as_millis().to_string(),
            settings.clients_per_username.to_string(),
            settings.usernames_per_client.to_string(),
            settings.lockout.as_millis().to_string(),
        ];
        let (clients, usernames, username_locked, client_blocked): (usize, usize, u8, u8) =
            self.store.run_script(&RECORD_FAILURE, &keys, &args).await?;
        Ok(FailureCount {
            clients,
            usernames,
            username_locked: username_locked == 1,
            client_blocked: client_blocked == 1,
        })
    }

    /// A successful login forgets the username's failures (not its lock, which the login
    /// could not have passed).
    pub async fn forget_username(&self, username: &str) -> Result<(), Unavailable> {
        let user = self.store.username_pseudonym(username);
        let [failures, ..] = self.keys(&user, "");
        self.store.delete(&failures).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::store::test_store;

    fn failures(lockout_secs: u64) -> Option<SharedLoginFailures> {
        let settings = SuspiciousLoginSettings {
            window: Duration::from_secs(900),
            clients_per_username: 3,
            usernames_per_client: 4,
            lockout: Duration::from_secs(lockout_secs),
        };
        Some(SharedLoginFailures::new(test_store()?, settings))
    }

    fn client(last: u8) -> ClientKey {
        ClientKey::V4([198, 51, 100, last].into())
    }

    #[tokio::test]
    async fn one_username_failing_from_many_clients_is_locked_once_for_everyone() {
        let Some(monitor) = failures(60) else { return };
        // A second instance: same Redis, same prefix.
        let other = SharedLoginFailures::new(monitor.store.clone(), monitor.settings);
        let first = monitor.record_failure("victim", client(1)).await.unwrap();
        assert_eq!((first.clients, first.username_locked), (1, false));
        let again = other.record_failure("victim", client(1)).await.unwrap();
        assert_eq!(again.clients, 1, "the same client twice is one client");
        other.record_failure("victim", client(2)).await.unwrap();
        let third = monitor.record_failure("victim", client(3)).await.unwrap();
        assert_eq!((third.clients, third.username_locked), (3, true));
        let fourth = other.record_failure("victim", client(4)).await.unwrap();
        assert!(!fourth.username_locked, "raised once");

        let locked = other.locked_for("victim", client(9)).await.unwrap();
        assert!(
            locked.is_some_and(|left| left > Duration::from_secs(55)),
            "{locked:?}"
        );
        assert_eq!(
            monitor.locked_for("someone_else", client(9)).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn one_client_failing_with_many_usernames_is_blocked() {
        let Some(monitor) = failures(60) else { return };
        for name in ["a1", "a2", "a3"] {
            let count = monitor.record_failure(name, client(7)).await.unwrap();
            assert!(!count.client_blocked);
        }
        let fourth = monitor.record_failure("a4", client(7)).await.unwrap();
        assert_eq!((fourth.usernames, fourth.client_blocked), (4, true));
        assert!(
            monitor
                .locked_for("anyone", client(7))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(monitor.locked_for("anyone", client(8)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_zero_lockout_reports_once_but_locks_nothing() {
        let Some(monitor) = failures(0) else { return };
        let mut raised = 0;
        for last in 1..=5 {
            let count = monitor
                .record_failure("victim", client(last))
                .await
                .unwrap();
            raised += usize::from(count.username_locked);
        }
        assert_eq!(raised, 1);
        assert_eq!(monitor.locked_for("victim", client(1)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_success_forgets_the_usernames_failures() {
        let Some(monitor) = failures(60) else { return };
        monitor.record_failure("alice", client(1)).await.unwrap();
        monitor.record_failure("alice", client(2)).await.unwrap();
        monitor.forget_username("alice").await.unwrap();
        let count = monitor.record_failure("alice", client(3)).await.unwrap();
        assert_eq!(count.clients, 1);
    }
}
