//! What several instances share through Redis (`REDIS_URL`): the rate-limit buckets, the
//! per-username login throttle, the suspicious-login counters and locks, and the revocation
//! broadcast. Without `REDIS_URL` none of this runs and every counter stays in memory.
//!
//! Redis holds only counters that expire and a channel of hints; the database stays the
//! source of truth for accounts and sessions. Every call is bounded by a timeout, and a call
//! that fails is `Unavailable`, which callers answer with 503: a limit that cannot be checked
//! is never taken as passed.

pub mod gcra;
pub mod login_failures;
pub mod revocation_channel;
mod store;

#[cfg(test)]
pub(crate) use store::test_store;
pub use store::{RedisStore, Unavailable};
