//! Argon2id password hashing at the OWASP parameters (m = 19 MiB, t = 2, p = 1), stored as PHC
//! strings.
//!
//! Hashing is deliberately slow and memory-hungry, so it never runs on an async worker: it goes
//! to the blocking pool, and a semaphore caps how many hashes run at once. Without the cap a
//! login storm would take every core (starving reads) and 19 MiB per concurrent hash.

use std::sync::Arc;

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
    password_hash::{SaltString, rand_core::OsRng},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

fn argon2id() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("the OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid {
        /// The stored hash uses weaker (or just different) parameters than today's: store a
        /// fresh hash now that we briefly hold the plaintext.
        needs_rehash: bool,
    },
    Invalid,
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so that an unknown username costs the
    /// same time as a wrong password and timing does not reveal which accounts exist.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(max_concurrent_hashes: usize) -> anyhow::Result<Self> {
        let dummy = SecretString::from(crate::auth::random_token(24));
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent_hashes.max(1))),
            dummy_hash: hash_blocking(&dummy)?.into(),
        })
    }

    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        self.run(move || hash_blocking(&password)).await?
    }

    /// `stored` is `None` for an unknown user: the dummy hash is verified instead, and the
    /// answer is always `Invalid`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> anyhow::Result<Verification> {
        let user_exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let verification = self
            .run(move || verify_blocking(&password, &stored))
            .await??;
        Ok(if user_exists {
            verification
        } else {
            Verification::Invalid
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("the password hasher was shut down")?;
        tokio::task::spawn_blocking(work)
            .await
            .context("a password hashing task panicked")
    }
}

fn hash_blocking(password: &SecretString) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2id()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &SecretString, stored: &str) -> anyhow::Result<Verification> {
    let parsed = PasswordHash::new(stored)
        .map_err(|e| anyhow::anyhow!("a stored password hash is not a PHC string: {e}"))?;
    // The stored parameters decide the cost of this check, so verification stays correct for
    // old hashes; needs_rehash then upgrades them.
    match Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed) {
        Ok(()) => Ok(Verification::Valid {
            needs_rehash: !uses_current_parameters(&parsed),
        }),
        Err(argon2::password_hash::Error::Password) => Ok(Verification::Invalid),
        Err(e) => Err(anyhow::anyhow!("argon2 verification failed: {e}")),
    }
}

fn uses_current_parameters(hash: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm == Algorithm::Argon2id.ident()
        && hash.version == Some(Version::V0x13.into())
        && params.m_cost() == MEMORY_KIB
        && params.t_cost() == ITERATIONS
        && params.p_cost() == PARALLELISM
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let hasher = PasswordHasher::new(1).unwrap();
        let hash = hasher.hash(secret("correct horse battery")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            hasher
                .verify(secret("correct horse battery"), Some(hash.clone()))
                .await
                .unwrap(),
            Verification::Valid {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher.verify(secret("wrong"), Some(hash)).await.unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = PasswordHasher::new(1).unwrap();
        assert_eq!(
            hasher.verify(secret("anything"), None).await.unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn a_hash_with_weaker_parameters_is_flagged_for_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"old password", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        let hasher = PasswordHasher::new(1).unwrap();
        assert_eq!(
            hasher
                .verify(secret("old password"), Some(weak))
                .await
                .unwrap(),
            Verification::Valid { needs_rehash: true }
        );
    }
}
