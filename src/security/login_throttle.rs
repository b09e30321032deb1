//! Password attempts per username, from any client (`RATE_LIMIT_LOGIN_PER_USERNAME`): a GCRA
//! bucket per username, charged by `password_attempts` (login, password change) once the
//! username is known.

use std::num::NonZeroU32;

use actix_governor::governor::{
    DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use crate::{config::Quota, error::ApiError};

fn governor_quota(quota: Quota) -> GovernorQuota {
    let burst = NonZeroU32::new(quota.count).unwrap_or(NonZeroU32::MIN);
    GovernorQuota::with_period(quota.replenish_interval())
        .unwrap_or_else(|| GovernorQuota::per_second(burst))
        .allow_burst(burst)
}

/// Password attempts per username, from any IP: a botnet rotating addresses still gets only
/// this many guesses at one account.
pub struct LoginThrottle {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl LoginThrottle {
    pub fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(governor_quota(quota)),
        }
    }

    /// Counts one attempt for `username` (case-insensitive, as usernames are).
    pub fn attempt(&self, username: &str) -> Result<(), ApiError> {
        self.limiter
            .check_key(&username.to_lowercase())
            .map_err(|not_until| ApiError::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Forgets usernames whose budget is full again, so the map does not grow without bound.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_throttle_counts_usernames_case_insensitively() {
        let throttle = LoginThrottle::new(Quota::per_minute(2));
        assert!(throttle.attempt("Alice").is_ok());
        assert!(throttle.attempt("alice").is_ok());
        assert!(matches!(
            throttle.attempt("ALICE"),
            Err(ApiError::RateLimited { .. })
        ));
        assert!(throttle.attempt("bob").is_ok());
    }
}
