//! Suspicious login activity, distinct from rate limiting: rate limits cap how *fast* one
//! client or one username may try; this notices *patterns* across clients.
//!
//! * one username failing from many clients (a distributed guess at one account) locks that
//!   username for `ACCOUNT_LOCKOUT_SECS`;
//! * one client failing with many usernames (credential stuffing, password spraying) blocks
//!   logins from that client for the same time.
//!
//! A client is a `ClientKey`, as for the rate limits: an IPv6 host rotating the addresses of
//! its /64 is one client, so it can neither pass for the many sources that lock an account nor
//! spray usernames from fresh addresses.
//!
//! Either raises one `security.suspicious_login` audit event and a warning. Usernames are
//! tracked as submitted, existing or not, so a lock never tells whether an account exists.
//! `ACCOUNT_LOCKOUT_SECS=0` keeps the warnings and locks nothing.
//!
//! The counters and locks are in memory, or in Redis when several instances share them
//! (`REDIS_URL`, `cluster::login_failures`): the same rules, counted once for all instances.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::{
    cluster::{RedisStore, Unavailable, login_failures::SharedLoginFailures},
    config::SuspiciousLoginSettings,
    security::client_ip::ClientKey,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suspicion {
    /// `username` failed from `clients` distinct clients within the window.
    ManyClientsForOneUsername { username: String, clients: usize },
    /// `client` failed with `usernames` distinct usernames within the window.
    ManyUsernamesFromOneClient { client: ClientKey, usernames: usize },
}

#[derive(Default)]
struct Failures {
    by_username: HashMap<String, Vec<(Instant, ClientKey)>>,
    by_client: HashMap<ClientKey, Vec<(Instant, String)>>,
    locked_usernames: HashMap<String, Instant>,
    blocked_clients: HashMap<ClientKey, Instant>,
}

pub struct LoginMonitor {
    settings: SuspiciousLoginSettings,
    /// Used when `shared` is not.
    failures: Mutex<Failures>,
    shared: Option<SharedLoginFailures>,
}

fn distinct<T: PartialEq>(values: impl Iterator<Item = T>) -> usize {
    let mut seen: Vec<T> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.len()
}

impl LoginMonitor {
    pub fn new(settings: SuspiciousLoginSettings, shared: Option<&RedisStore>) -> Self {
        Self {
            settings,
            failures: Mutex::default(),
            shared: shared.map(|store| SharedLoginFailures::new(store.clone(), settings)),
        }
    }

    /// How long the username stays locked or the client blocked, if either is.
    pub async fn locked_for(
        &self,
        username: &str,
        client: ClientKey,
    ) -> Result<Option<Duration>, Unavailable> {
        match &self.shared {
            Some(shared) => shared.locked_for(&username.to_lowercase(), client).await,
            None => Ok(self.check(username, client).err()),
        }
    }

    /// Records a failed login; returns the suspicions this failure newly raised.
    pub async fn failed(
        &self,
        username: &str,
        client: ClientKey,
    ) -> Result<Vec<Suspicion>, Unavailable> {
        let Some(shared) = &self.shared else {
            return Ok(self.record_failure(username, client));
        };
        let username = username.to_lowercase();
        let count = shared.record_failure(&username, client).await?;
        let mut raised = Vec::new();
        if count.username_locked {
            raised.push(Suspicion::ManyClientsForOneUsername {
                username,
                clients: count.clients,
            });
        }
        if count.client_blocked {
            raised.push(Suspicion::ManyUsernamesFromOneClient {
                client,
                usernames: count.usernames,
            });
        }
        Ok(raised)
    }

    /// A successful login forgets that username's failures.
    pub async fn succeeded(&self, username: &str) -> Result<(), Unavailable> {
        match &self.shared {
            Some(shared) => shared.forget_username(&username.to_lowercase()).await,
            None => {
                self.record_success(username);
                Ok(())
            }
        }
    }

    /// `Err(remaining)` while the username is locked or the client blocked.
    fn check(&self, username: &str, client: ClientKey) -> Result<(), Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let until = [
            failures.locked_usernames.get(&username.to_lowercase()),
            failures.blocked_clients.get(&client),
        ]
        .into_iter()
        .flatten()
        .filter(|until| **until > now)
        .max()
        .copied();
        match until {
            Some(until) => Err(until - now),
            None => Ok(()),
        }
    }

    fn record_failure(&self, username: &str, client: ClientKey) -> Vec<Suspicion> {
        let now = Instant::now();
        let window_start = now.checked_sub(self.settings.window).unwrap_or(now);
        let username = username.to_lowercase();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let mut raised = Vec::new();

        let by_username = failures.by_username.entry(username.clone()).or_default();
        by_username.retain(|(at, _)| *at >= window_start);
        by_username.push((now, client));
        let clients = distinct(by_username.iter().map(|(_, client)| *client));
        // Bounded: only the recent tail matters for counting distinct sources.
        let keep = self.settings.clients_per_username * 4;
        if by_username.len() > keep {
            by_username.drain(..by_username.len() - keep);
        }
        if clients >= self.settings.clients_per_username
            && !failures.locked_usernames.contains_key(&username)
        {
            failures
                .locked_usernames
                .insert(username.clone(), now + self.settings.lockout);
            raised.push(Suspicion::ManyClientsForOneUsername {
                username: username.clone(),
                clients,
            });
        }

        let by_client = failures.by_client.entry(client).or_default();
        by_client.retain(|(at, _)| *at >= window_start);
        by_client.push((now, username));
        let usernames = distinct(by_client.iter().map(|(_, name)| name.as_str()));
        let keep = self.settings.usernames_per_client * 4;
        if by_client.len() > keep {
            by_client.drain(..by_client.len() - keep);
        }
        if usernames >= self.settings.usernames_per_client
            && !failures.blocked_clients.contains_key(&client)
        {
            failures
                .blocked_clients
                .insert(client, now + self.settings.lockout);
            raised.push(Suspicion::ManyUsernamesFromOneClient { client, usernames });
        }
        raised
    }

    fn record_success(&self, username: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_username
            .remove(&username.to_lowercase());
    }

    /// Forgets failures older than the window and expired locks, so memory follows recent
    /// activity only.
    pub fn purge(&self) {
        let now = Instant::now();
        let window_start = now.checked_sub(self.settings.window).unwrap_or(now);
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.by_username.retain(|_, list| {
            list.retain(|(at, _)| *at >= window_start);
            !list.is_empty()
        });
        failures.by_client.retain(|_, list| {
            list.retain(|(at, _)| *at >= window_start);
            !list.is_empty()
        });
        failures.locked_usernames.retain(|_, until| *until > now);
        failures.blocked_clients.retain(|_, until| *until > now);
    }

    pub fn tracked_keys(&self) -> usize {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.by_username.len() + failures.by_client.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(lockout_secs: u64) -> LoginMonitor {
        LoginMonitor::new(
            SuspiciousLoginSettings {
                window: Duration::from_secs(900),
                clients_per_username: 3,
                usernames_per_client: 4,
                lockout: Duration::from_secs(lockout_secs),
            },
            None,
        )
    }

    fn client(last: u8) -> ClientKey {
        ClientKey::V4([198, 51, 100, last].into())
    }

    #[test]
    fn one_username_failing_from_many_clients_is_locked_once() {
        let monitor = monitor(60);
        assert!(monitor.record_failure("Victim", client(1)).is_empty());
        assert!(
            monitor.record_failure("victim", client(1)).is_empty(),
            "same client twice is one client"
        );
        assert!(monitor.record_failure("victim", client(2)).is_empty());
        assert_eq!(
            monitor.record_failure("VICTIM", client(3)),
            vec![Suspicion::ManyClientsForOneUsername {
                username: "victim".into(),
                clients: 3
            }]
        );
        assert!(
            monitor.record_failure("victim", client(4)).is_empty(),
            "raised once"
        );
        assert!(monitor.check("victim", client(9)).is_err());
        assert!(monitor.check("someone_else", client(9)).is_ok());
    }

    #[test]
    fn one_client_failing_with_many_usernames_is_blocked() {
        let monitor = monitor(60);
        for name in ["a1", "a2", "a3"] {
            assert!(monitor.record_failure(name, client(7)).is_empty());
        }
        assert_eq!(
            monitor.record_failure("a4", client(7)),
            vec![Suspicion::ManyUsernamesFromOneClient {
                client: client(7),
                usernames: 4
            }]
        );
        assert!(monitor.check("anyone", client(7)).is_err());
        assert!(monitor.check("anyone", client(8)).is_ok());
    }

    #[test]
    fn a_zero_lockout_warns_but_locks_nothing() {
        let monitor = monitor(0);
        for last in 1..=3 {
            monitor.record_failure("victim", client(last));
        }
        assert!(monitor.check("victim", client(1)).is_ok());
    }

    #[test]
    fn the_purge_leaves_nothing_behind_once_the_window_and_locks_are_over() {
        let monitor = LoginMonitor::new(
            SuspiciousLoginSettings {
                window: Duration::ZERO,
                clients_per_username: 3,
                usernames_per_client: 3,
                lockout: Duration::ZERO,
            },
            None,
        );
        for last in 0..100 {
            monitor.record_failure(&format!("user{last}"), client(last));
        }
        monitor.purge();
        assert_eq!(monitor.tracked_keys(), 0);
    }
}
