//! Refresh tokens: opaque, 256 random bits, stored only as a SHA-256, rotated on every use.
//!
//! Presenting a token that was already rotated means two parties hold it, one of them a thief:
//! the whole family is revoked, the newest token included, and the caller must log in again.

use sha2::{Digest, Sha256};
use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{Role, jwt::unix_now, random_token},
    db::Database,
    vocabulary::vocabulary,
};

/// Sessions deleted per transaction when pruning.
const PRUNE_BATCH: u32 = 500;

vocabulary! {
    /// Why a refresh token stopped working (`refresh_tokens.revoked_reason`).
    pub enum RevokeReason {
        /// Exchanged for its successor; presenting it again is reuse.
        Rotated = "rotated",
        Reuse = "reuse",
        Logout = "logout",
        PasswordChange = "password_change",
        /// An administrator changed the account's role.
        Admin = "admin",
        Disabled = "disabled",
    }
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn unix_now_i64() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

/// A newly issued refresh token; the plaintext exists only here and in the response.
pub struct IssuedRefreshToken {
    pub token: String,
    pub family_id: String,
}

/// Starts a family for a fresh login.
pub async fn start_family(
    executor: impl SqliteExecutor<'_>,
    user_id: i64,
    ttl_secs: u64,
) -> sqlx::Result<IssuedRefreshToken> {
    let family_id = uuid::Uuid::new_v4().to_string();
    let expires_at = unix_now_i64().saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let token = insert(executor, user_id, &family_id, expires_at).await?;
    Ok(IssuedRefreshToken { token, family_id })
}

async fn insert(
    executor: impl SqliteExecutor<'_>,
    user_id: i64,
    family_id: &str,
    expires_at: i64,
) -> sqlx::Result<String> {
    let token = random_token(32);
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(user_id)
    .bind(family_id)
    .bind(token_hash(&token))
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(token)
}

/// The account a rotated token belongs to, as it is now.
pub struct RefreshedAccount {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub token_version: i64,
}

pub enum Rotation {
    Rotated {
        account: RefreshedAccount,
        issued: IssuedRefreshToken,
    },
    /// An already-rotated token came back: the family is now revoked.
    ReuseDetected { user_id: i64, family_id: String },
    /// Unknown, expired, revoked for another reason, or the account is disabled.
    Refused,
}

#[derive(sqlx::FromRow)]
struct StoredToken {
    id: i64,
    user_id: i64,
    username: String,
    family_id: String,
    expires_at: i64,
    revoked_reason: Option<RevokeReason>,
    role: Role,
    disabled: bool,
    token_version: i64,
}

/// Exchanges `presented` for a new token of the same family, in one write transaction with
/// its audit event (a refusal for an unknown or dead token is left to the caller to record).
pub async fn rotate(
    writer: &SqlitePool,
    presented: &str,
    audit: &AuditContext,
) -> sqlx::Result<Rotation> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let stored: Option<StoredToken> = sqlx::query_as(
        "SELECT t.id, t.user_id, t.family_id, t.expires_at, t.revoked_reason,
                u.username, u.role, u.disabled, u.token_version
         FROM refresh_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ?1",
    )
    .bind(token_hash(presented))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(stored) = stored else {
        return Ok(Rotation::Refused);
    };
    match stored.revoked_reason {
        Some(RevokeReason::Rotated) => {
            revoke_family(&mut tx, &stored.family_id, RevokeReason::Reuse).await?;
            let event = audit
                .event(AuditAction::RefreshReuse, Outcome::Failure)
                .actor(stored.user_id)
                .target(AuditTarget::Session(stored.family_id.clone()))
                .reason("a rotated refresh token was presented again; session revoked");
            audit::record(&mut *tx, &event).await?;
            tx.commit().await?;
            return Ok(Rotation::ReuseDetected {
                user_id: stored.user_id,
                family_id: stored.family_id,
            });
        }
        Some(_) => return Ok(Rotation::Refused),
        None => {}
    }
    if stored.expires_at <= unix_now_i64() || stored.disabled {
        return Ok(Rotation::Refused);
    }
    sqlx::query("UPDATE refresh_tokens SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1")
        .bind(stored.id)
        .bind(unix_now_i64())
        .bind(RevokeReason::Rotated)
        .execute(&mut *tx)
        .await?;
    let token = insert(
        &mut *tx,
        stored.user_id,
        &stored.family_id,
        stored.expires_at,
    )
    .await?;
    let event = audit
        .event(AuditAction::Refresh, Outcome::Success)
        .actor(stored.user_id)
        .target(AuditTarget::Session(stored.family_id.clone()));
    audit::record(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(Rotation::Rotated {
        account: RefreshedAccount {
            user_id: stored.user_id,
            username: stored.username,
            role: stored.role,
            token_version: stored.token_version,
        },
        issued: IssuedRefreshToken {
            token,
            family_id: stored.family_id,
        },
    })
}

/// Revokes every live token of a family.
pub async fn revoke_family(
    connection: &mut SqliteConnection,
    family_id: &str,
    reason: RevokeReason,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = ?2, revoked_reason = ?3
         WHERE family_id = ?1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(unix_now_i64())
    .bind(reason)
    .execute(connection)
    .await?;
    Ok(())
}

/// Revokes every live token of every family of a user.
pub async fn revoke_all_of_user(
    connection: &mut SqliteConnection,
    user_id: i64,
    reason: RevokeReason,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = ?2, revoked_reason = ?3
         WHERE user_id = ?1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(unix_now_i64())
    .bind(reason)
    .execute(connection)
    .await?;
    Ok(())
}

/// Deletes the sessions whose every token has been spent (revoked or expired) for more than
/// `retention_days`, and returns how many tokens went.
///
/// Whole sessions only: a rotated token must stay while its session lives, because it is what
/// betrays a replay (`rotate`). A session is spent once its last token is, and its expiry is
/// shared by all its tokens, so nothing of a live session is ever touched.
pub async fn prune_spent(db: &Database, retention_days: u32) -> sqlx::Result<u64> {
    let cutoff = unix_now_i64().saturating_sub(i64::from(retention_days) * 86_400);
    let mut deleted = 0;
    loop {
        let families: Vec<String> = sqlx::query_scalar(
            "SELECT family_id FROM refresh_tokens GROUP BY family_id
             HAVING max(min(coalesce(revoked_at, expires_at), expires_at)) < ?1
             LIMIT ?2",
        )
        .bind(cutoff)
        .bind(PRUNE_BATCH)
        .fetch_all(&db.reader)
        .await?;
        let mut tx = db.writer.begin_with("BEGIN IMMEDIATE").await?;
        for family in &families {
            deleted += sqlx::query("DELETE FROM refresh_tokens WHERE family_id = ?1")
                .bind(family)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        if families.len() < PRUNE_BATCH as usize {
            return Ok(deleted);
        }
    }
}
