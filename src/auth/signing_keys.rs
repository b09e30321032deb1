//! The access-token signing keys: Ed25519 key pairs in `signing_keys`, shared by every
//! instance, the private key sealed by the data keyring.
//!
//! Signing asks the database which key is current (one indexed read per token, beside the
//! password hash or refresh rotation that precedes it), so `filmvault rotate-signing-key`
//! takes effect on every instance at its next token. Verifying uses the published keys held
//! in memory, re-read every `REFRESH_INTERVAL`, when this instance meets a new current key,
//! and when a token names a kid it does not know (at most once per `UNKNOWN_KID_REREAD`, so
//! made-up kids cannot hammer the database). A retired key verifies for the longest lifetime
//! a token it signed can have, then leaves the published set and the table.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::{rand::SystemRandom, signature::Ed25519KeyPair};

use super::{
    eddsa::{decoding_key, encoding_key, public_key},
    random_token, unix_now, unix_now_i64,
};
use crate::{
    audit::{self, AuditAction, AuditContext, Outcome},
    crypto::Keyring,
    db,
    db::Database,
};

/// How often the published keys are re-read from the database.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
const UNKNOWN_KID_REREAD: Duration = Duration::from_secs(1);
/// A token signed just before the rotation committed, by an instance that read the old key
/// as current, may carry an `exp` a little after retirement + lifetime.
const RETIREMENT_MARGIN: Duration = Duration::from_secs(60);
const KID_BYTES: usize = 16;

/// A key of the published set (`/.well-known/jwks.json`).
#[derive(Clone)]
pub struct PublishedKey {
    pub kid: String,
    pub public_key: Vec<u8>,
    decoding: DecodingKey,
    /// Unix seconds; `None` while the key is current.
    verifies_until: Option<u64>,
}

impl PublishedKey {
    fn verifies_at(&self, now: u64) -> bool {
        self.verifies_until.is_none_or(|until| now < until)
    }
}

pub(super) struct Signer {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
}

#[derive(sqlx::FromRow)]
struct StoredPublicKey {
    kid: String,
    public_key: Vec<u8>,
    retired_at: Option<i64>,
}

pub struct SigningKeys {
    db: Database,
    /// How long a retired key still verifies.
    verification_after_retirement: Duration,
    published: RwLock<Arc<Vec<PublishedKey>>>,
    signer: RwLock<Option<Arc<Signer>>>,
    last_unknown_kid_reread: tokio::sync::Mutex<Option<Instant>>,
}

impl SigningKeys {
    pub(super) async fn load(
        db: Database,
        keyring: &Keyring,
        access_token_ttl: Duration,
    ) -> anyhow::Result<Self> {
        create_first_key(&db, keyring).await?;
        let keys = Self {
            db,
            verification_after_retirement: verification_after_retirement(access_token_ttl),
            published: RwLock::default(),
            signer: RwLock::default(),
            last_unknown_kid_reread: tokio::sync::Mutex::default(),
        };
        keys.refresh()
            .await
            .context("cannot read the signing keys")?;
        Ok(keys)
    }

    /// The keys that verify tokens now: the current one and the retired ones whose tokens
    /// may not have expired yet.
    pub fn published(&self) -> Vec<PublishedKey> {
        let now = unix_now();
        let published = self.published.read().unwrap_or_else(|e| e.into_inner());
        published
            .iter()
            .filter(|key| key.verifies_at(now))
            .cloned()
            .collect()
    }

    /// Re-reads the published keys from the database.
    pub async fn refresh(&self) -> sqlx::Result<()> {
        let cutoff = unix_now().saturating_sub(self.verification_after_retirement.as_secs());
        let stored: Vec<StoredPublicKey> = db::fetch_all!(
            &mut self.db.read().await?,
            "SELECT kid, public_key, retired_at FROM signing_keys
             WHERE retired_at IS NULL OR retired_at > $1
             ORDER BY retired_at IS NOT NULL, retired_at DESC",
            i64::try_from(cutoff).unwrap_or(i64::MAX)
        )
        .await?;
        let keys = stored
            .into_iter()
            .map(|key| PublishedKey {
                decoding: decoding_key(&key.public_key),
                verifies_until: key.retired_at.map(|retired| {
                    u64::try_from(retired).unwrap_or(0)
                        + self.verification_after_retirement.as_secs()
                }),
                kid: key.kid,
                public_key: key.public_key,
            })
            .collect();
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    /// The key that verifies tokens naming `kid`, if it is one of ours and still verifies.
    pub(super) async fn verifying_key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.find(kid) {
            return Some(key);
        }
        if !is_well_formed(kid) || !self.may_reread().await {
            return None;
        }
        if let Err(error) = self.refresh().await {
            tracing::error!(%error, "the signing keys could not be re-read");
        }
        self.find(kid)
    }

    /// Whether `kid` is one of ours and still verifies (for a token verified before).
    pub(super) fn still_verifies(&self, kid: &str) -> bool {
        self.with_key(kid, |_| ()).is_some()
    }

    fn find(&self, kid: &str) -> Option<DecodingKey> {
        self.with_key(kid, |key| key.decoding.clone())
    }

    /// `read` applied to the published key `kid`, if it still verifies.
    fn with_key<T>(&self, kid: &str, read: impl FnOnce(&PublishedKey) -> T) -> Option<T> {
        let now = unix_now();
        let published = self.published.read().unwrap_or_else(|e| e.into_inner());
        published
            .iter()
            .find(|key| key.kid == kid && key.verifies_at(now))
            .map(read)
    }

    /// Whether an unknown kid may cause a re-read now (one at a time, one per interval).
    async fn may_reread(&self) -> bool {
        let mut last = self.last_unknown_kid_reread.lock().await;
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REREAD) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The key the database names current, opened with the keyring on first use.
    pub(super) async fn current_signer(&self, keyring: &Keyring) -> anyhow::Result<Arc<Signer>> {
        let kid: String = db::fetch_optional_scalar!(
            &mut self.db.read().await?,
            "SELECT kid FROM signing_keys WHERE current_signer = 1"
        )
        .await?
        .context("there is no current signing key; run `filmvault rotate-signing-key`")?;
        if let Some(signer) = self.cached_signer().filter(|signer| signer.kid == kid) {
            return Ok(signer);
        }
        let sealed: Vec<u8> = db::fetch_optional_scalar!(
            &mut self.db.read().await?,
            "SELECT private_key FROM signing_keys WHERE kid = $1 AND current_signer = 1",
            &kid
        )
        .await?
        .context("the current signing key was retired while being read")?;
        let pkcs8 = keyring
            .open(sealing_purpose(&kid).as_bytes(), &sealed)
            .with_context(|| format!("cannot open the private key of signing key {kid}"))?;
        let signer = Arc::new(Signer {
            encoding: encoding_key(&pkcs8),
            kid,
        });
        *self.signer.write().unwrap_or_else(|e| e.into_inner()) = Some(signer.clone());
        tracing::info!(kid = %signer.kid, "signing access tokens with a new key");
        // This instance verifies what it now signs.
        self.refresh().await?;
        Ok(signer)
    }

    fn cached_signer(&self) -> Option<Arc<Signer>> {
        self.signer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn verification_after_retirement(access_token_ttl: Duration) -> Duration {
    access_token_ttl + RETIREMENT_MARGIN
}

/// Our kids are `KID_BYTES` random bytes in unpadded base64url.
fn is_well_formed(kid: &str) -> bool {
    kid.len() == (KID_BYTES * 4).div_ceil(3)
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Binds a sealed private key to its row.
fn sealing_purpose(kid: &str) -> String {
    format!("signing_keys.private_key:{kid}")
}

/// A fresh key pair, its private half sealed for its row.
struct NewKey {
    kid: String,
    public_key: Vec<u8>,
    sealed_private_key: Vec<u8>,
}

impl NewKey {
    fn generate(keyring: &Keyring) -> anyhow::Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let public_key = public_key(pkcs8.as_ref()).context("a generated key pair parses")?;
        let kid = random_token(KID_BYTES);
        Ok(Self {
            sealed_private_key: keyring.seal(sealing_purpose(&kid).as_bytes(), pkcs8.as_ref()),
            public_key: public_key.to_vec(),
            kid,
        })
    }
}

/// Instances starting together on an empty table: the unique `current_signer` lets one
/// insert win; the others insert nothing and use it.
async fn create_first_key(db: &Database, keyring: &Keyring) -> anyhow::Result<()> {
    let current: Option<String> = db::fetch_optional_scalar!(
        &mut db.read().await?,
        "SELECT kid FROM signing_keys WHERE current_signer = 1"
    )
    .await?;
    if current.is_some() {
        return Ok(());
    }
    let key = NewKey::generate(keyring)?;
    let inserted = db::execute!(
        &mut db.write().await?,
        "INSERT INTO signing_keys (kid, public_key, private_key, created_at, current_signer)
         VALUES ($1, $2, $3, $4, 1)
         ON CONFLICT (current_signer) DO NOTHING",
        &key.kid,
        &key.public_key,
        &key.sealed_private_key,
        unix_now_i64()
    )
    .await?;
    if inserted == 1 {
        tracing::info!(kid = %key.kid, "created the first access-token signing key");
    }
    Ok(())
}

/// What `rotate` did.
#[derive(Debug)]
pub struct Rotation {
    pub new_kid: String,
    pub retired_kid: Option<String>,
    /// Unix seconds until which the retired key still verifies.
    pub retired_verifies_until: u64,
}

/// A new current key; the old one stops signing, its private key is wiped, and it verifies
/// until the tokens it signed have expired. Keys retired longer ago are deleted.
pub async fn rotate(
    db: &Database,
    keyring: &Keyring,
    access_token_ttl: Duration,
) -> anyhow::Result<Rotation> {
    let key = NewKey::generate(keyring)?;
    let now = unix_now_i64();
    let keep_for = verification_after_retirement(access_token_ttl).as_secs();
    let mut tx = db.begin().await?;
    let retired_kid: Option<String> = db::fetch_optional_scalar!(
        &mut tx,
        "UPDATE signing_keys SET current_signer = NULL, retired_at = $1, private_key = NULL
         WHERE current_signer = 1 RETURNING kid",
        now
    )
    .await?;
    db::execute!(
        &mut tx,
        "DELETE FROM signing_keys WHERE retired_at < $1",
        now - i64::try_from(keep_for).unwrap_or(i64::MAX)
    )
    .await?;
    db::execute!(
        &mut tx,
        "INSERT INTO signing_keys (kid, public_key, private_key, created_at, current_signer)
         VALUES ($1, $2, $3, $4, 1)",
        &key.kid,
        &key.public_key,
        &key.sealed_private_key,
        now
    )
    .await
    .context("another rotation ran at the same moment; run it again")?;
    let retired = retired_kid.as_deref().unwrap_or("none");
    let event = AuditContext::system()
        .event(AuditAction::SigningKeyRotate, Outcome::Success)
        .reason(format!("new key {}; retired key {retired}", key.kid));
    audit::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Rotation {
        new_kid: key.kid,
        retired_kid,
        retired_verifies_until: u64::try_from(now).unwrap_or(0) + keep_for,
    })
}

/// Re-seals under the keyring's current data key every private key still sealed under a
/// previous one (`filmvault rotate-data-key`); only the current signing key has one (a
/// retired key's is wiped). Returns how many were re-sealed.
pub async fn reseal_private_keys(db: &Database, keyring: &Keyring) -> anyhow::Result<u64> {
    let current = keyring.current_key_id();
    let stored: Vec<(String, Vec<u8>)> = db::fetch_all!(
        &mut db.read().await?,
        "SELECT kid, private_key FROM signing_keys WHERE private_key IS NOT NULL"
    )
    .await?;
    let mut resealed = 0;
    for (kid, sealed) in stored {
        if Keyring::key_id_of(&sealed).ok() == Some(current) {
            continue;
        }
        let purpose = sealing_purpose(&kid);
        let pkcs8 = keyring
            .open(purpose.as_bytes(), &sealed)
            .with_context(|| format!("cannot open the private key of signing key {kid}"))?;
        // Unless a rotation of the signing key retired (and wiped) it meanwhile.
        resealed += db::execute!(
            &mut db.write().await?,
            "UPDATE signing_keys SET private_key = $2 WHERE kid = $1 AND private_key = $3",
            &kid,
            keyring.seal(purpose.as_bytes(), &pkcs8),
            &sealed
        )
        .await?;
    }
    Ok(resealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kids_of_our_shape_may_cause_a_reread() {
        assert!(is_well_formed(&random_token(KID_BYTES)));
        for kid in [
            "",
            "short",
            &"a".repeat(23),
            "../../etc/passwd......",
            "aaaaaaaaaaaaaaaaaaaa==",
        ] {
            assert!(!is_well_formed(kid), "{kid}");
        }
    }
}
