//! One rate limit in Redis: the GCRA of `gcra.lua`, shared by every instance, with the
//! same answers as the in-memory limiter (governor) for the same quota.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{
    cluster::{RedisStore, Unavailable},
    config::Quota,
};

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));

/// What a limiter said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

/// A named limit (`{prefix}:rl:{name}:{bucket}` in Redis).
#[derive(Clone)]
pub struct SharedLimiter {
    store: RedisStore,
    /// `{prefix}:rl:{name}:`, to which a check appends the bucket.
    key_prefix: String,
    /// The script's arguments, the same for every check: the emission interval and the
    /// tolerance, in microseconds.
    args: [String; 2],
    burst: u32,
}

impl SharedLimiter {
    pub fn new(store: RedisStore, name: &'static str, quota: Quota) -> Self {
        let interval_micros =
            u64::try_from(quota.replenish_interval().as_micros().max(1)).unwrap_or(u64::MAX);
        let burst = quota.count.max(1);
        let tolerance_micros = interval_micros.saturating_mul(u64::from(burst - 1));
        Self {
            key_prefix: store.key(&format!("rl:{name}:")),
            store,
            args: [interval_micros.to_string(), tolerance_micros.to_string()],
            burst,
        }
    }

    /// The most requests one bucket allows at once (`X-RateLimit-Limit`).
    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// Counts one request against `bucket`.
    pub async fn check(&self, bucket: &str) -> Result<Decision, Unavailable> {
        let key = format!("{}{bucket}", self.key_prefix);
        let (allowed, value): (u8, u64) = self.store.run_script(&GCRA, &[&key], &self.args).await?;
        Ok(if allowed == 1 {
            Decision::Allowed {
                remaining: u32::try_from(value).unwrap_or(u32::MAX),
            }
        } else {
            Decision::Limited {
                retry_after: Duration::from_micros(value),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use actix_governor::governor::{
        Quota as GovernorQuota, RateLimiter, middleware::StateInformationMiddleware,
    };

    use super::*;
    use crate::cluster::store::test_store;

    fn quota(count: u32, per_secs: u64) -> Quota {
        Quota {
            count,
            per: Duration::from_secs(per_secs),
        }
    }

    #[tokio::test]
    async fn the_burst_is_allowed_then_the_next_waits_one_interval() {
        let Some(store) = test_store() else { return };
        let limiter = SharedLimiter::new(store, "test", quota(5, 60));
        for expected_remaining in (0..5).rev() {
            assert_eq!(
                limiter.check("client").await.unwrap(),
                Decision::Allowed {
                    remaining: expected_remaining
                }
            );
        }
        let Decision::Limited { retry_after } = limiter.check("client").await.unwrap() else {
            panic!("the sixth request in a minute is allowed");
        };
        // One request comes back every 12 s.
        assert!(
            retry_after > Duration::from_secs(11) && retry_after <= Duration::from_secs(12),
            "{retry_after:?}"
        );
        assert!(matches!(
            limiter.check("another-client").await.unwrap(),
            Decision::Allowed { remaining: 4 }
        ));
    }

    #[tokio::test]
    async fn answers_match_the_in_memory_limiter_for_the_same_quota() {
        let Some(store) = test_store() else { return };
        for (count, per_secs) in [(1, 60), (3, 1), (5, 60), (20, 3600)] {
            let quota = quota(count, per_secs);
            let shared = SharedLimiter::new(store.clone(), "compare", quota);
            let local = RateLimiter::direct(
                GovernorQuota::with_period(quota.replenish_interval())
                    .unwrap()
                    .allow_burst(NonZeroU32::new(count).unwrap()),
            )
            .with_middleware::<StateInformationMiddleware>();
            let bucket = format!("{count}-per-{per_secs}");
            for request in 0..count + 2 {
                let expected = local
                    .check()
                    .map(|snapshot| snapshot.remaining_burst_capacity());
                match (shared.check(&bucket).await.unwrap(), expected) {
                    (Decision::Allowed { remaining }, Ok(expected)) => {
                        assert_eq!(remaining, expected, "{quota} request {request}");
                    }
                    (Decision::Limited { .. }, Err(_)) => {}
                    (shared, local) => {
                        panic!("{quota} request {request}: Redis {shared:?}, memory {local:?}")
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn concurrent_requests_from_many_tasks_never_exceed_the_burst() {
        let Some(store) = test_store() else { return };
        let limiter = SharedLimiter::new(store, "race", quota(10, 3600));
        let checks = (0..50).map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.check("hot").await.unwrap() })
        });
        let mut allowed = 0;
        for check in checks {
            if matches!(check.await.unwrap(), Decision::Allowed { .. }) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10);
    }
}
