//! Access tokens this instance has already verified, so a client sending the same token again
//! costs a SHA-256 and a map lookup instead of an Ed25519 verification (tens of microseconds:
//! most of an authenticated read's CPU time).
//!
//! * Only a token that passed the whole check (`JwtCodec::verify`) gets in, keyed by the
//!   SHA-256 of all its bytes (header, claims and signature): a token that differs in any byte
//!   is verified afresh. The key is a digest, not the token, so nothing here can be replayed,
//!   and a lookup's timing tells nothing about a stored token.
//! * A hit still checks what changes with time: the token's validity window (`nbf`, `exp`,
//!   exactly as the full check does) and, by the caller, that its key still verifies.
//!   Revocation is checked after this, for every request, as before.
//! * Bounded: at `CAPACITY` entries the expired ones go, and if that frees too little, all of
//!   them (the next requests verify again). Without an entry nothing is wrong, only slower.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use sha2::{Digest, Sha256};

/// About 1 KB each (claims and key id): at most ~10 MB, far more live tokens than one
/// instance's clients hold at once.
const CAPACITY: usize = 10_000;

/// The SHA-256 of a token as sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub(super) fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

/// A token that verified: its claims `C`, the key that verified it, and its validity window
/// (`nbf` and `exp`, Unix seconds).
#[derive(Clone)]
pub(super) struct Verified<C> {
    pub(super) claims: C,
    pub(super) kid: String,
    pub(super) not_before: u64,
    pub(super) expires_at: u64,
}

impl<C> Verified<C> {
    /// The validity window of RFC 7519 as the full check applies it (no leeway).
    fn is_valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.expires_at
    }
}

pub(super) struct VerifiedTokens<C> {
    entries: Mutex<HashMap<Fingerprint, Verified<C>>>,
}

impl<C> Default for VerifiedTokens<C> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<C: Clone> VerifiedTokens<C> {
    /// The token's claims and key id if it verified before and is inside its validity window.
    pub(super) fn get(&self, fingerprint: &Fingerprint, now: u64) -> Option<Verified<C>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(fingerprint)
            .filter(|verified| verified.is_valid_at(now))
            .cloned()
    }

    pub(super) fn insert(&self, fingerprint: Fingerprint, verified: Verified<C>, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, kept| kept.is_valid_at(now));
            if entries.len() >= CAPACITY / 2 {
                entries.clear();
            }
        }
        entries.insert(fingerprint, verified);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(nbf: u64, exp: u64) -> Verified<&'static str> {
        Verified {
            claims: "claims",
            kid: "k".into(),
            not_before: nbf,
            expires_at: exp,
        }
    }

    #[test]
    fn a_hit_is_inside_the_validity_window_and_for_the_same_bytes_only() {
        let tokens = VerifiedTokens::default();
        let fingerprint = Fingerprint::of("a.b.c");
        tokens.insert(fingerprint, verified(100, 200), 150);
        assert!(tokens.get(&fingerprint, 100).is_some());
        assert!(tokens.get(&fingerprint, 200).is_some());
        assert!(tokens.get(&fingerprint, 99).is_none());
        assert!(tokens.get(&fingerprint, 201).is_none());
        assert!(tokens.get(&Fingerprint::of("a.b.d"), 150).is_none());
    }

    #[test]
    fn a_full_map_drops_expired_entries_first_and_never_grows_past_its_capacity() {
        let tokens = VerifiedTokens::default();
        for i in 0..CAPACITY {
            let exp = if i % 3 == 0 { 300 } else { 120 };
            tokens.insert(Fingerprint::of(&i.to_string()), verified(100, exp), 110);
        }
        let live = Fingerprint::of("0");
        tokens.insert(Fingerprint::of("new"), verified(100, 300), 150);
        assert!(tokens.get(&live, 150).is_some(), "a live entry was dropped");
        for i in 0..3 * CAPACITY {
            tokens.insert(Fingerprint::of(&format!("x{i}")), verified(100, 300), 150);
        }
        let size = tokens.entries.lock().unwrap().len();
        assert!(size <= CAPACITY, "{size} entries");
    }
}
