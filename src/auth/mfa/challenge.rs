//! The `mfa_token`: what a correct password of an account with MFA earns instead of a
//! session. 256 random bits, shown once and stored only as its SHA-256 (like the mailed
//! tokens); not a JWT, so no route takes it as a bearer token. It lives `LIFETIME`, is spent
//! by the first right code, and dies at the `MAX_WRONG_CODES`th wrong one.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{
    auth::{random_token, unix_now_i64},
    db::{self, Database, Executor, Transaction},
};

const LIFETIME: Duration = Duration::from_secs(300);
const MAX_WRONG_CODES: i64 = 5;
/// Tells the token apart from every other secret of the API in a log or a bug report.
const PREFIX: &str = "mfa_";

/// A challenge just issued; the token exists in clear only here and in the response.
pub struct IssuedChallenge {
    pub token: String,
    pub expires_in: Duration,
}

/// A live challenge: the account it is for, and the account's token version when the
/// password was checked (a password change, disable or role change since kills it).
pub struct Challenge {
    pub id: i64,
    pub user_id: i64,
    pub token_version: i64,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Issues a challenge for `user_id`, and deletes every expired one (of anyone: the index on
/// the expiry makes it cheap, and the table never grows past the logins of five minutes).
pub async fn issue(
    db: &Database,
    user_id: i64,
    token_version: i64,
) -> sqlx::Result<IssuedChallenge> {
    let now = unix_now_i64();
    let token = format!("{PREFIX}{}", random_token(32));
    let mut tx = db.begin().await?;
    db::execute!(
        &mut tx,
        "DELETE FROM mfa_challenges WHERE expires_at <= $1",
        now
    )
    .await?;
    db::execute!(
        &mut tx,
        "INSERT INTO mfa_challenges (user_id, token_hash, token_version, expires_at)
         VALUES ($1, $2, $3, $4)",
        user_id,
        token_hash(&token),
        token_version,
        now + LIFETIME.as_secs() as i64
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedChallenge {
        token,
        expires_in: LIFETIME,
    })
}

/// The live challenge `token` names, if any: unknown, expired and dead ones are all `None`.
pub async fn find(db: &mut impl Executor, token: &str) -> sqlx::Result<Option<Challenge>> {
    let row: Option<(i64, i64, i64)> = db::fetch_optional!(
        db,
        "SELECT id, user_id, token_version FROM mfa_challenges
         WHERE token_hash = $1 AND expires_at > $2 AND failed_codes < $3",
        token_hash(token),
        unix_now_i64(),
        MAX_WRONG_CODES
    )
    .await?;
    Ok(row.map(|(id, user_id, token_version)| Challenge {
        id,
        user_id,
        token_version,
    }))
}

/// Spends the challenge if it is still live; `false` if it died or was spent meanwhile.
pub async fn spend(tx: &mut Transaction, id: i64) -> sqlx::Result<bool> {
    let spent = db::execute!(
        tx,
        "DELETE FROM mfa_challenges WHERE id = $1 AND expires_at > $2 AND failed_codes < $3",
        id,
        unix_now_i64(),
        MAX_WRONG_CODES
    )
    .await?;
    Ok(spent == 1)
}

/// Counts a wrong code against the challenge; the last one allowed deletes it.
pub async fn record_wrong_code(tx: &mut Transaction, id: i64) -> sqlx::Result<()> {
    db::execute!(
        &mut *tx,
        "UPDATE mfa_challenges SET failed_codes = failed_codes + 1 WHERE id = $1",
        id
    )
    .await?;
    db::execute!(
        tx,
        "DELETE FROM mfa_challenges WHERE id = $1 AND failed_codes >= $2",
        id,
        MAX_WRONG_CODES
    )
    .await?;
    Ok(())
}
