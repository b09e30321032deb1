//! Password attempts per username, from any client (`RATE_LIMIT_LOGIN_PER_USERNAME`): a GCRA
//! bucket per username, charged by `password_attempts` (login, password change) once the
//! username is known. In memory, or in Redis when several instances share it (`REDIS_URL`).

use std::num::NonZeroU32;

use actix_governor::governor::{
    DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use crate::{
    cluster::{
        RedisStore,
        gcra::{Decision, SharedLimiter},
    },
    config::Quota,
    error::ApiError,
};

fn governor_quota(quota: Quota) -> GovernorQuota {
    let burst = NonZeroU32::new(quota.count).unwrap_or(NonZeroU32::MIN);
    GovernorQuota::with_period(quota.replenish_interval())
        .unwrap_or_else(|| GovernorQuota::per_second(burst))
        .allow_burst(burst)
}

/// Password attempts per username, from any IP: a botnet rotating addresses still gets only
/// this many guesses at one account.
pub enum LoginThrottle {
    Local(DefaultKeyedRateLimiter<String>),
    /// Keyed by the username's pseudonym: keys stay short whatever was submitted, and name
    /// no one.
    Shared(Box<SharedLimiter>),
}

impl LoginThrottle {
    pub fn new(quota: Quota, shared: Option<&RedisStore>) -> Self {
        match shared {
            Some(store) => Self::Shared(Box::new(SharedLimiter::new(
                store.clone(),
                "login-user",
                quota,
            ))),
            None => Self::Local(RateLimiter::keyed(governor_quota(quota))),
        }
    }

    /// Counts one attempt for `username` (case-insensitive, as usernames are).
    pub async fn attempt(&self, username: &str) -> Result<(), ApiError> {
        let username = username.to_lowercase();
        let retry_after = match self {
            Self::Local(limiter) => match limiter.check_key(&username) {
                Ok(_) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
            },
            Self::Shared(limiter) => {
                let bucket = limiter.store().username_pseudonym(&username);
                match limiter.check(&bucket).await? {
                    Decision::Allowed { .. } => return Ok(()),
                    Decision::Limited { retry_after } => retry_after,
                }
            }
        };
        Err(ApiError::RateLimited { retry_after })
    }

    /// Forgets usernames whose budget is full again, so the map does not grow without bound
    /// (Redis expires its keys by itself).
    pub fn retain_recent(&self) {
        if let Self::Local(limiter) = self {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    pub fn tracked_keys(&self) -> usize {
        match self {
            Self::Local(limiter) => limiter.len(),
            Self::Shared(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_login_throttle_counts_usernames_case_insensitively_in_memory_and_in_redis() {
        let Some(store) = crate::cluster::test_store() else {
            return;
        };
        for throttle in [
            LoginThrottle::new(Quota::per_minute(2), None),
            LoginThrottle::new(Quota::per_minute(2), Some(&store)),
        ] {
            assert!(throttle.attempt("Alice").await.is_ok());
            assert!(throttle.attempt("alice").await.is_ok());
            assert!(matches!(
                throttle.attempt("ALICE").await,
                Err(ApiError::RateLimited { .. })
            ));
            assert!(throttle.attempt("bob").await.is_ok());
        }
    }
}
