//! Suspicious login activity, distinct from rate limiting: rate limits cap how *fast* one
//! client or one username may try; this notices *patterns* across clients.
//!
//! * one username failing from many IPs (a distributed guess at one account) locks that
//!   username for `ACCOUNT_LOCKOUT_SECS`;
//! * one IP failing with many usernames (credential stuffing, password spraying) blocks logins
//!   from that IP for the same time.
//!
//! Either raises one `security.suspicious_login` audit event and a warning. Usernames are
//! tracked as submitted, existing or not, so a lock never tells whether an account exists.
//! `ACCOUNT_LOCKOUT_SECS=0` keeps the warnings and locks nothing.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::config::SuspiciousLoginSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suspicion {
    /// `username` failed from `ips` distinct addresses within the window.
    ManyIpsForOneUsername { username: String, ips: usize },
    /// `ip` failed with `usernames` distinct usernames within the window.
    ManyUsernamesFromOneIp { ip: IpAddr, usernames: usize },
}

#[derive(Default)]
struct Failures {
    by_username: HashMap<String, Vec<(Instant, IpAddr)>>,
    by_ip: HashMap<IpAddr, Vec<(Instant, String)>>,
    locked_usernames: HashMap<String, Instant>,
    blocked_ips: HashMap<IpAddr, Instant>,
}

pub struct LoginMonitor {
    settings: SuspiciousLoginSettings,
    failures: Mutex<Failures>,
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
    pub fn new(settings: SuspiciousLoginSettings) -> Self {
        Self {
            settings,
            failures: Mutex::default(),
        }
    }

    /// `Err(remaining)` while the username is locked or the IP blocked.
    pub fn check(&self, username: &str, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let until = [
            failures.locked_usernames.get(&username.to_lowercase()),
            failures.blocked_ips.get(&ip),
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

    /// Records a failed login; returns the suspicions this failure newly raised.
    pub fn record_failure(&self, username: &str, ip: IpAddr) -> Vec<Suspicion> {
        let now = Instant::now();
        let window_start = now.checked_sub(self.settings.window).unwrap_or(now);
        let username = username.to_lowercase();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let mut raised = Vec::new();

        let by_username = failures.by_username.entry(username.clone()).or_default();
        by_username.retain(|(at, _)| *at >= window_start);
        by_username.push((now, ip));
        let ips = distinct(by_username.iter().map(|(_, ip)| *ip));
        // Bounded: only the recent tail matters for counting distinct sources.
        let keep = self.settings.ips_per_username * 4;
        if by_username.len() > keep {
            by_username.drain(..by_username.len() - keep);
        }
        if ips >= self.settings.ips_per_username
            && !failures.locked_usernames.contains_key(&username)
        {
            failures
                .locked_usernames
                .insert(username.clone(), now + self.settings.lockout);
            raised.push(Suspicion::ManyIpsForOneUsername {
                username: username.clone(),
                ips,
            });
        }

        let by_ip = failures.by_ip.entry(ip).or_default();
        by_ip.retain(|(at, _)| *at >= window_start);
        by_ip.push((now, username));
        let usernames = distinct(by_ip.iter().map(|(_, name)| name.as_str()));
        let keep = self.settings.usernames_per_ip * 4;
        if by_ip.len() > keep {
            by_ip.drain(..by_ip.len() - keep);
        }
        if usernames >= self.settings.usernames_per_ip && !failures.blocked_ips.contains_key(&ip) {
            failures.blocked_ips.insert(ip, now + self.settings.lockout);
            raised.push(Suspicion::ManyUsernamesFromOneIp { ip, usernames });
        }
        raised
    }

    /// A successful login forgets that username's failures.
    pub fn record_success(&self, username: &str) {
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
        failures.by_ip.retain(|_, list| {
            list.retain(|(at, _)| *at >= window_start);
            !list.is_empty()
        });
        failures.locked_usernames.retain(|_, until| *until > now);
        failures.blocked_ips.retain(|_, until| *until > now);
    }

    pub fn tracked_keys(&self) -> usize {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.by_username.len() + failures.by_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(lockout_secs: u64) -> LoginMonitor {
        LoginMonitor::new(SuspiciousLoginSettings {
            window: Duration::from_secs(900),
            ips_per_username: 3,
            usernames_per_ip: 4,
            lockout: Duration::from_secs(lockout_secs),
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, last])
    }

    #[test]
    fn one_username_failing_from_many_ips_is_locked_once() {
        let monitor = monitor(60);
        assert!(monitor.record_failure("Victim", ip(1)).is_empty());
        assert!(
            monitor.record_failure("victim", ip(1)).is_empty(),
            "same IP twice is one IP"
        );
        assert!(monitor.record_failure("victim", ip(2)).is_empty());
        assert_eq!(
            monitor.record_failure("VICTIM", ip(3)),
            vec![Suspicion::ManyIpsForOneUsername {
                username: "victim".into(),
                ips: 3
            }]
        );
        assert!(
            monitor.record_failure("victim", ip(4)).is_empty(),
            "raised once"
        );
        assert!(monitor.check("victim", ip(9)).is_err());
        assert!(monitor.check("someone_else", ip(9)).is_ok());
    }

    #[test]
    fn one_ip_failing_with_many_usernames_is_blocked() {
        let monitor = monitor(60);
        for name in ["a1", "a2", "a3"] {
            assert!(monitor.record_failure(name, ip(7)).is_empty());
        }
        assert_eq!(
            monitor.record_failure("a4", ip(7)),
            vec![Suspicion::ManyUsernamesFromOneIp {
                ip: ip(7),
                usernames: 4
            }]
        );
        assert!(monitor.check("anyone", ip(7)).is_err());
        assert!(monitor.check("anyone", ip(8)).is_ok());
    }

    #[test]
    fn a_zero_lockout_warns_but_locks_nothing() {
        let monitor = monitor(0);
        for last in 1..=3 {
            monitor.record_failure("victim", ip(last));
        }
        assert!(monitor.check("victim", ip(1)).is_ok());
    }

    #[test]
    fn the_purge_leaves_nothing_behind_once_the_window_and_locks_are_over() {
        let monitor = LoginMonitor::new(SuspiciousLoginSettings {
            window: Duration::ZERO,
            ips_per_username: 3,
            usernames_per_ip: 3,
            lockout: Duration::ZERO,
        });
        for last in 0..100 {
            monitor.record_failure(&format!("user{last}"), ip(last));
        }
        monitor.purge();
        assert_eq!(monitor.tracked_keys(), 0);
    }
}
