//! Argon2id password hashing at the OWASP parameters (m = 19 MiB, t = 2, p = 1), stored as PHC
//! strings.
//!
//! Hashing is deliberately slow and memory-hungry, so it never runs on an async worker: it goes
//! to a few dedicated threads (`PASSWORD_HASH_CONCURRENCY`, one on two cores). That caps the CPU
//! a login storm can take from reads, and the memory: each thread reuses its own 19 MiB block
//! while jobs keep coming, and gives it back after a second without one (`memory` makes sure
//! glibc returns it to the system). (On tokio's blocking pool, every one of its many threads
//! kept a 19 MiB block in its malloc arena after the first hash: a login storm left hundreds
//! of MiB resident.)
//!
//! The queue in front of those threads is bounded too: a request that will hash first
//! reserves one of `PASSWORD_HASH_QUEUE` places, and when none is free it is refused at once
//! (`HashError::QueueFull`, 503 with `Retry-After`) instead of joining a queue that only grows
//! while a login storm lasts.

use std::{
    cell::RefCell,
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread,
    time::Duration,
};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, Salt, SaltString, rand_core::OsRng},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

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

/// Why a password was not hashed or verified.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every place in the queue is taken: the request is refused, not parked.
    #[error("the password hashing queue is full")]
    QueueFull,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// One permit per request holding a `HashReservation`: the queue's bound.
    queue_places: Arc<Semaphore>,
    /// Verified against when the user does not exist, so that an unknown username costs the
    /// same time as a wrong password and timing does not reveal which accounts exist.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Starts `threads` hashing threads, fed by at most `queue_bound` requests at a time; the
    /// threads end when the last clone of the hasher is dropped.
    pub fn new(threads: usize, queue_bound: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job, not while running it.
                        let job = match queue.lock() {
                            Ok(receiver) => receiver.recv_timeout(KEEP_MEMORY_WHILE_IDLE),
                            Err(poisoned) => {
                                poisoned.into_inner().recv_timeout(KEEP_MEMORY_WHILE_IDLE)
                            }
                        };
                        match job {
                            Ok(job) => job(),
                            Err(RecvTimeoutError::Timeout) => release_memory(),
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                })
                .context("cannot start a password hashing thread")?;
        }
        // Computed on a hashing thread, like every hash, so no other thread keeps 19 MiB.
        let (done, dummy_hash) = mpsc::channel();
        jobs.send(Box::new(move || {
            let dummy = SecretString::from(crate::auth::random_token(24));
            let _ = done.send(hash_blocking(&dummy));
        }))
        .map_err(|_| anyhow::anyhow!("the password hashing threads did not start"))?;
        let dummy_hash = dummy_hash
            .recv()
            .context("the password hashing thread stopped")??;
        Ok(Self {
            jobs,
            queue_places: Arc::new(Semaphore::new(queue_bound.max(1))),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// A place in the queue for this request's hashes, or `QueueFull` at once. Taken before the
    /// work that leads up to hashing (the database read of a login), so that a refused
    /// request costs next to nothing; held until the request ends.
    pub fn reserve(&self) -> Result<HashReservation, HashError> {
        let place = Arc::clone(&self.queue_places)
            .try_acquire_owned()
            .map_err(|_| {
                tracing::warn!(target: "security", "password hashing refused: the queue is full");
                HashError::QueueFull
            })?;
        Ok(HashReservation {
            hasher: self.clone(),
            place: Arc::new(place),
        })
    }
}

/// A request's place in the password hashing queue; its hashes run one after the other.
pub struct HashReservation {
    hasher: PasswordHasher,
    place: Arc<OwnedSemaphorePermit>,
}

impl HashReservation {
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        Ok(self.run(move || hash_blocking(&password)).await??)
    }

    /// `stored` is `None` for an unknown user: the dummy hash is verified instead, and the
    /// answer is always `Invalid`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verification, HashError> {
        let user_exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.hasher.dummy_hash.to_string());
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
    ) -> Result<T, HashError> {
        // The job keeps the place until it has run, even if the requester gave up waiting
        // (a disconnected client): jobs queued never outnumber the places.
        let place = Arc::clone(&self.place);
        let (done, result) = oneshot::channel();
        self.hasher
            .jobs
            .send(Box::new(move || {
                // The requester may have gone (client disconnected); nothing to tell it then.
                let _ = done.send(work());
                drop(place);
            }))
            .map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))?;
        Ok(result.await.context("a password hashing job panicked")?)
    }
}

/// How long a hashing thread keeps its working memory without a job to use it for: between
/// login bursts the process does not hold memory that only hashing uses.
const KEEP_MEMORY_WHILE_IDLE: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's argon2 working memory (19 MiB at our parameters), reused by every hash it
    /// computes while busy: no allocation, and no fresh pages to fault in, per login.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn release_memory() {
    BLOCKS.take();
}

/// Runs argon2 with this thread's reusable memory into `out`.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    out: &mut [u8],
) -> anyhow::Result<()> {
    let mut salt_buffer = [0u8; Salt::MAX_LENGTH];
    let salt = salt
        .decode_b64(&mut salt_buffer)
        .map_err(|e| anyhow::anyhow!("a password salt is not base64: {e}"))?;
    let count = argon2.params().block_count();
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..count])
            .map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))
    })
}

fn hash_blocking(password: &SecretString) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = argon2id();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(
        &argon2,
        password.expose_secret().as_bytes(),
        salt.as_salt(),
        &mut output,
    )?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params())
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(hash.to_string())
}

fn verify_blocking(password: &SecretString, stored: &str) -> anyhow::Result<Verification> {
    let parsed = PasswordHash::new(stored)
        .map_err(|e| anyhow::anyhow!("a stored password hash is not a PHC string: {e}"))?;
    let invalid_hash = || anyhow::anyhow!("a stored password hash is not a usable argon2 hash");
    // The stored parameters decide the cost of this check, so old hashes keep verifying;
    // needs_rehash then upgrades them.
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|_| invalid_hash())?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|_| invalid_hash())?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|_| invalid_hash())?;
    let (salt, expected) = parsed.salt.zip(parsed.hash).ok_or_else(invalid_hash)?;
    let mut output = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    compute(
        &argon2,
        password.expose_secret().as_bytes(),
        salt,
        &mut output,
    )?;
    let computed = Output::new(&output).map_err(|_| invalid_hash())?;
    // Output's equality is constant-time.
    if computed == expected {
        Ok(Verification::Valid {
            needs_rehash: !uses_current_parameters(&parsed),
        })
    } else {
        Ok(Verification::Invalid)
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
        let hashing = PasswordHasher::new(1, 4).unwrap().reserve().unwrap();
        let hash = hashing.hash(secret("correct horse battery")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            hashing
                .verify(secret("correct horse battery"), Some(hash.clone()))
                .await
                .unwrap(),
            Verification::Valid {
                needs_rehash: false
            }
        );
        assert_eq!(
            hashing.verify(secret("wrong"), Some(hash)).await.unwrap(),
            Verification::Invalid
        );
    }

    /// Our hashes are standard PHC strings: the argon2 crate's own verifier accepts them.
    #[test]
    fn stored_hashes_verify_with_the_standard_argon2_verifier() {
        use argon2::PasswordVerifier as _;
        let hash = hash_blocking(&secret("interoperable password")).unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"interoperable password", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"another password", &parsed)
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hashing = PasswordHasher::new(1, 4).unwrap().reserve().unwrap();
        assert_eq!(
            hashing.verify(secret("anything"), None).await.unwrap(),
            Verification::Invalid
        );
    }

    #[tokio::test]
    async fn a_hash_with_weaker_parameters_is_flagged_for_rehash() {
        use argon2::PasswordHasher as _;
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"old password", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        let hashing = PasswordHasher::new(1, 4).unwrap().reserve().unwrap();
        assert_eq!(
            hashing
                .verify(secret("old password"), Some(weak))
                .await
                .unwrap(),
            Verification::Valid { needs_rehash: true }
        );
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_a_finished_request_frees_its_place() {
        let hasher = PasswordHasher::new(1, 2).unwrap();
        let first = hasher.reserve().unwrap();
        let _second = hasher.reserve().unwrap();
        assert!(matches!(hasher.reserve(), Err(HashError::QueueFull)));
        drop(first);
        assert!(hasher.reserve().is_ok());
    }
}
