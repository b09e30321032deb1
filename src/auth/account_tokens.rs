//! The single-use tokens mailed in links: email verification and password reset.
//!
//! A token is 256 random bits, shown once (in the mail) and stored only as its SHA-256. It is
//! spent by one atomic `UPDATE … RETURNING`, so two instances handed the same link at once
//! cannot both use it. Issuing a token spends the account's older ones of the same purpose:
//! only the newest link works. The tokens issued recently are also the per-account mail
//! budget (`within_budget`), shared by every instance through the database.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{
    auth::{random_token, unix_now},
    db::{self, Database, Transaction},
    vocabulary::vocabulary,
};

vocabulary! {
    /// What a token proves (`account_tokens.purpose`).
    pub enum TokenPurpose {
        EmailVerification = "email_verification",
        PasswordReset = "password_reset",
    }
}

impl TokenPurpose {
    /// A verification link may sit in an inbox over a weekend's day; a reset link is a key to
    /// the account, so it lives minutes.
    pub fn lifetime(self) -> Duration {
        match self {
            Self::EmailVerification => Duration::from_secs(24 * 3600),
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

/// The account a spent token belonged to, and the token version it was bound to.
pub struct SpentToken {
    pub user_id: i64,
    pub token_version: Option<i64>,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn unix_now_i64() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
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

/// Issues a token for `user_id` and spends its older ones of the same purpose. A reset
/// token carries `token_version`, the account's at issue (see `spend`).
pub async fn issue(
    tx: &mut Transaction,
    user_id: i64,
    purpose: TokenPurpose,
    token_version: Option<i64>,
) -> sqlx::Result<IssuedToken> {
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
    let expires_at = now + purpose.lifetime().as_secs() as i64;
    db::execute!(
        tx,
        "INSERT INTO account_tokens (user_id, purpose, token_hash, token_version, created_at,
                                     expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        user_id,
        purpose,
        token_hash(&token),
        token_version,
        now,
        expires_at
    )
    .await?;
    Ok(IssuedToken(token))
}

/// Spends `token` if it is a live token of `purpose`: unknown, expired, spent and
/// superseded tokens are all `None`, alike. The caller checks the binding (the token
/// version) against the account, in the same transaction, and rolls back on a mismatch.
pub async fn spend(
    tx: &mut Transaction,
    token: &str,
    purpose: TokenPurpose,
) -> sqlx::Result<Option<SpentToken>> {
    let row: Option<(i64, Option<i64>)> = db::fetch_optional!(
        tx,
        "UPDATE account_tokens SET spent_at = $3
         WHERE token_hash = $1 AND purpose = $2 AND spent_at IS NULL AND expires_at > $3
         RETURNING user_id, token_version",
        token_hash(token),
        purpose,
        unix_now_i64()
    )
    .await?;
    Ok(row.map(|(user_id, token_version)| SpentToken {
        user_id,
        token_version,
    }))
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
