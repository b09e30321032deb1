//! The single-use tokens mailed in links: email verification, password reset and email
//! change.
//!
//! A token is 256 random bits, shown once (in the mail) and stored only as its SHA-256. It is
//! bound to the address it was mailed to, sealed with the token (for an email change, the
//! new address it confirms): the caller checks the binding when it spends the token. It is
//! spent by one atomic `UPDATE … RETURNING`, so two instances handed the same link at once
//! cannot both use it. Issuing a token spends the account's older ones of the same purpose:
//! only the newest link works. The tokens issued recently are also the per-account mail
//! budget (`within_budget`), shared by every instance through the database.

use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::{
    auth::{random_token, unix_now_i64},
    crypto::Keyring,
    db::{self, Database, Transaction},
    domain::email::Email,
    vocabulary::vocabulary,
};

vocabulary! {
    /// What a token proves (`account_tokens.purpose`).
    pub enum TokenPurpose {
        EmailVerification = "email_verification",
        PasswordReset = "password_reset",
        /// Proves the owner reads mail at the new address of an email change.
        EmailChange = "email_change",
    }
}

impl TokenPurpose {
    /// A verification link may sit in an inbox over a weekend's day; a reset link is a key to
    /// the account, so it lives minutes.
    pub fn lifetime(self) -> Duration {
        match self {
            Self::EmailVerification | Self::EmailChange => Duration::from_secs(24 * 3600),
            Self::PasswordReset => Duration::from_secs(30 * 60),
        }
    }
}

/// Mails of one purpose one account may be sent per `MAIL_BUDGET_WINDOW`: enough for a
/// lost mail or two, too few to flood an inbox from any number of clients.
const MAIL_BUDGET: i64 = 3;
const MAIL_BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// A token just issued; the plaintext exists only here and in the mail.
pub struct IssuedToken(String);

impl IssuedToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The account a spent token belonged to, and the token version and address it was bound
/// to. `email` is `None` for a token bound to no address (issued before tokens were bound).
pub struct SpentToken {
    pub user_id: i64,
    pub token_version: Option<i64>,
    pub email: Option<Email>,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The address is sealed for its token's row, found by the token's hash.
fn email_purpose(token_hash: &[u8]) -> Vec<u8> {
    [b"account_tokens.email:".as_slice(), token_hash].concat()
}

/// Rows re-sealed per transaction by `reseal_addresses`.
const RESEAL_BATCH: i64 = 100;

/// Re-seals under the keyring's current key every mailed link's address still under a previous
/// key, in batches of short transactions, while the service serves (see
/// `email::reseal_emails`). Returns how many rows changed.
pub async fn reseal_addresses(db: &Database, keyring: &Keyring) -> anyhow::Result<u64> {
    let current = keyring.current_key_id();
    let mut resealed = 0;
    let mut after_id = 0;
    loop {
        let mut tx = db.begin().await?;
        let batch: Vec<(i64, Vec<u8>, Vec<u8>)> = db::fetch_all!(
            &mut tx,
            "SELECT id, token_hash, email_sealed FROM account_tokens
             WHERE id > $1 AND email_sealed IS NOT NULL ORDER BY id LIMIT $2",
            after_id,
            RESEAL_BATCH
        )
        .await?;
        let Some(&(last_id, ..)) = batch.last() else {
            return Ok(resealed);
        };
        for (id, token_hash, sealed) in batch {
            if Keyring::key_id_of(&sealed).ok() == Some(current) {
                continue;
            }
            let purpose = email_purpose(&token_hash);
            let address = keyring
                .open(&purpose, &sealed)
                .with_context(|| format!("cannot open the address of mailed link {id}"))?;
            db::execute!(
                &mut tx,
                "UPDATE account_tokens SET email_sealed = $2 WHERE id = $1",
                id,
                keyring.seal(&purpose, &address)
            )
            .await?;
            resealed += 1;
        }
        tx.commit().await?;
        after_id = last_id;
    }
}

fn open_email(keyring: &Keyring, token_hash: &[u8], sealed: &[u8]) -> Option<Email> {
    let address = keyring.open(&email_purpose(token_hash), sealed).ok()?;
    let address = String::from_utf8(address.to_vec()).ok()?;
    Email::parse(address).ok()
}

/// Whether `user_id` may be sent another mail of `purpose` now.
pub async fn within_budget(
    tx: &mut Transaction,
    user_id: i64,
    purpose: TokenPurpose,
) -> sqlx::Result<bool> {
    let since = unix_now_i64() - MAIL_BUDGET_WINDOW.as_secs() as i64;
    let recent: i64 = db::fetch_scalar!(
        tx,
        "SELECT count(*) FROM account_tokens
         WHERE user_id = $1 AND purpose = $2 AND created_at > $3",
        user_id,
        purpose,
        since
    )
    .await?;
    Ok(recent < MAIL_BUDGET)
}

/// What a new token is for, whose, and what it is bound to.
pub struct TokenRequest<'a> {
    pub user_id: i64,
    pub purpose: TokenPurpose,
    /// The account's token version at issue, for a reset or an email change (see `spend`).
    pub token_version: Option<i64>,
    /// The address the token is mailed to.
    pub email: &'a Email,
}

/// Issues a token and spends the account's older ones of the same purpose.
pub async fn issue(
    tx: &mut Transaction,
    keyring: &Keyring,
    request: TokenRequest<'_>,
) -> sqlx::Result<IssuedToken> {
    let TokenRequest {
        user_id,
        purpose,
        token_version,
        email,
    } = request;
    let now = unix_now_i64();
    db::execute!(
        &mut *tx,
        "UPDATE account_tokens SET spent_at = $3
         WHERE user_id = $1 AND purpose = $2 AND spent_at IS NULL",
        user_id,
        purpose,
        now
    )
    .await?;
    let token = random_token(32);
    let hash = token_hash(&token);
    let email_sealed = keyring.seal(&email_purpose(&hash), email.as_str().as_bytes());
    let expires_at = now + purpose.lifetime().as_secs() as i64;
    db::execute!(
        tx,
        "INSERT INTO account_tokens (user_id, purpose, token_hash, token_version, created_at,
                                     expires_at, email_sealed)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user_id,
        purpose,
        &hash,
        token_version,
        now,
        expires_at,
        email_sealed
    )
    .await?;
    Ok(IssuedToken(token))
}

/// Spends `token` if it is a live token of `purpose`: unknown, expired, spent and
/// superseded tokens are all `None`, alike. The caller checks the bindings (token version,
/// address) against the account, in the same transaction, and rolls back on a mismatch.
pub async fn spend(
    tx: &mut Transaction,
    keyring: &Keyring,
    token: &str,
    purpose: TokenPurpose,
) -> sqlx::Result<Option<SpentToken>> {
    let hash = token_hash(token);
    let row: Option<(i64, Option<i64>, Option<Vec<u8>>)> = db::fetch_optional!(
        tx,
        "UPDATE account_tokens SET spent_at = $3
         WHERE token_hash = $1 AND purpose = $2 AND spent_at IS NULL AND expires_at > $3
         RETURNING user_id, token_version, email_sealed",
        &hash,
        purpose,
        unix_now_i64()
    )
    .await?;
    Ok(row.map(|(user_id, token_version, sealed)| SpentToken {
        user_id,
        token_version,
        email: sealed.and_then(|sealed| open_email(keyring, &hash, &sealed)),
    }))
}

/// Spends every live token of the account, whatever its purpose: once its address changes,
/// no link mailed before works.
pub async fn spend_all_of(tx: &mut Transaction, user_id: i64) -> sqlx::Result<()> {
    db::execute!(
        tx,
        "UPDATE account_tokens SET spent_at = $2 WHERE user_id = $1 AND spent_at IS NULL",
        user_id,
        unix_now_i64()
    )
    .await?;
    Ok(())
}

/// Deletes tokens that expired more than `retention_days` ago; returns how many went.
pub async fn prune_expired(db: &Database, retention_days: u32) -> sqlx::Result<u64> {
    let cutoff = unix_now_i64().saturating_sub(i64::from(retention_days) * 86_400);
    let mut connection = db.write().await?;
    db::execute!(
        &mut connection,
        "DELETE FROM account_tokens WHERE expires_at < $1",
        cutoff
    )
    .await
}
