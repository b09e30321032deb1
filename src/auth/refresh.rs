//! Refresh tokens: opaque, 256 random bits, stored only as a SHA-256, rotated on every use.
//!
//! Presenting a token that was already rotated means two parties hold it, one of them a thief:
//! the whole family is revoked, the newest token included, and the caller must log in again.
//!
//! Every transaction that rotates or revokes tokens first locks the account they belong to
//! (`auth::lock_account`), so on PostgreSQL two instances handed the same token at once take
//! turns: the second finds it rotated and treats it as the reuse it is.

use sha2::{Digest, Sha256};

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Role, lock_account, random_token,
        refresh_families::{RevokeReason, revoke_family},
        sessions::{self, IdlePolicy, SessionClient},
        unix_now_i64,
    },
    db::{self, Database, Executor, Transaction},
    error::{ApiError, Step},
};

/// Sessions deleted per transaction when pruning.
const PRUNE_BATCH: i64 = 500;

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A newly issued refresh token; the plaintext exists only here and in the response.
pub struct IssuedRefreshToken {
    pub token: String,
    pub family_id: String,
    /// When the session's user proved their credentials (unix seconds): its access tokens'
    /// `auth_time`, the same for every token of the family.
    pub authenticated_at: i64,
}

/// Starts a family (a session) for a fresh login from `client`.
pub async fn start_family(
    db: &mut impl Executor,
    user_id: i64,
    ttl_secs: u64,
    client: &SessionClient,
) -> sqlx::Result<IssuedRefreshToken> {
    let family_id = uuid::Uuid::new_v4().to_string();
    let expires_at = unix_now_i64().saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let authenticated_at = sessions::record_start(db, &family_id, user_id, client).await?;
    let token = insert(db, user_id, &family_id, expires_at).await?;
    Ok(IssuedRefreshToken {
        token,
        family_id,
        authenticated_at,
    })
}

async fn insert(
    db: &mut impl Executor,
    user_id: i64,
    family_id: &str,
    expires_at: i64,
) -> sqlx::Result<String> {
    let token = random_token(32);
    db::execute!(
        db,
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4)",
        user_id,
        family_id,
        token_hash(&token),
        expires_at
    )
    .await?;
    Ok(token)
}

/// The account a rotated token belongs to, as it is now.
#[derive(sqlx::FromRow)]
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
    /// The session went unused for too long: it is now ended.
    Idle { family_id: String },
    /// Unknown, expired, revoked for another reason, or the account is disabled.
    Refused,
}

#[derive(sqlx::FromRow)]
struct StoredToken {
    id: i64,
    family_id: String,
    expires_at: i64,
    revoked_reason: Option<RevokeReason>,
}

/// The account that `token_hash` belongs to, its row locked until `tx` ends (see
/// `auth::lock_account`).
async fn lock_owner(
    tx: &mut Transaction,
    token_hash: &[u8],
) -> sqlx::Result<Option<(RefreshedAccount, bool)>> {
    #[derive(sqlx::FromRow)]
    struct Owner {
        #[sqlx(flatten)]
        account: RefreshedAccount,
        disabled: bool,
    }
    let owner: Option<Owner> = db::fetch_optional!(
        tx,
        sqlite: "SELECT id AS user_id, username, role, token_version, disabled FROM users
                 WHERE id = (SELECT user_id FROM refresh_tokens WHERE token_hash = $1)",
        postgres: "SELECT id AS user_id, username, role, token_version, disabled FROM users
                   WHERE id = (SELECT user_id FROM refresh_tokens WHERE token_hash = $1)
                   FOR NO KEY UPDATE",
        token_hash
    )
    .await?;
    Ok(owner.map(|owner| (owner.account, owner.disabled)))
}

/// What a refresh brings besides the token: who presents it, and the idle rule to apply.
pub struct RefreshUse<'a> {
    pub client: &'a SessionClient,
    pub idle: IdlePolicy,
    pub audit: &'a AuditContext,
}

/// Exchanges `presented` for a new token of the same family, in one write transaction with
/// its audit event (a refusal for an unknown or dead token is left to the caller to record).
pub async fn rotate(
    db: &Database,
    presented: &str,
    refresh_use: &RefreshUse<'_>,
) -> Result<Rotation, ApiError> {
    let audit = refresh_use.audit;
    let presented = token_hash(presented);
    let mut tx = db.begin().await.step("begin the transaction")?;
    let owner = lock_owner(&mut tx, &presented).await;
    let Some((account, disabled)) = owner.step("lock the token's account")? else {
        return Ok(Rotation::Refused);
    };
    // Read after the lock: what another rotation or revocation committed is seen.
    let stored: Option<StoredToken> = db::fetch_optional!(
        &mut tx,
        "SELECT id, family_id, expires_at, revoked_reason FROM refresh_tokens
         WHERE token_hash = $1",
        &presented
    )
    .await
    .step("read the presented token")?;
    let Some(stored) = stored else {
        return Ok(Rotation::Refused);
    };
    match stored.revoked_reason {
        Some(RevokeReason::Rotated) => {
            revoke_reused_family(tx, audit, account.user_id, stored.family_id).await
        }
        Some(_) => Ok(Rotation::Refused),
        None if stored.expires_at <= unix_now_i64() || disabled => Ok(Rotation::Refused),
        None => {
            let session = &stored.family_id;
            let (client, idle) = (refresh_use.client, refresh_use.idle);
            let Some(authenticated_at) =
                sessions::use_for_refresh(&mut tx, session, client, idle, audit).await?
            else {
                tx.commit().await.step("commit")?;
                return Ok(Rotation::Idle {
                    family_id: stored.family_id,
                });
            };
            exchange(tx, audit, account, stored, authenticated_at).await
        }
    }
}

/// A rotated token came back: its whole family is revoked, and the reuse recorded.
async fn revoke_reused_family(
    mut tx: Transaction,
    audit: &AuditContext,
    user_id: i64,
    family_id: String,
) -> Result<Rotation, ApiError> {
    revoke_family(&mut tx, &family_id, RevokeReason::Reuse)
        .await
        .step("revoke the reused token's session")?;
    let event = audit
        .event(AuditAction::RefreshReuse, Outcome::Failure)
        .actor(user_id)
        .target(AuditTarget::Session(family_id.clone()))
        .reason("a rotated refresh token was presented again; session revoked");
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")?;
    Ok(Rotation::ReuseDetected { user_id, family_id })
}

/// Spends the live token `stored` and issues its successor, which expires with the family and
/// keeps its `authenticated_at`: a refresh proves possession of a token, not of a credential.
async fn exchange(
    mut tx: Transaction,
    audit: &AuditContext,
    account: RefreshedAccount,
    stored: StoredToken,
    authenticated_at: i64,
) -> Result<Rotation, ApiError> {
    db::execute!(
        &mut tx,
        "UPDATE refresh_tokens SET revoked_at = $2, revoked_reason = $3 WHERE id = $1",
        stored.id,
        unix_now_i64(),
        RevokeReason::Rotated
    )
    .await
    .step("mark the presented token rotated")?;
    let token = insert(
        &mut tx,
        account.user_id,
        &stored.family_id,
        stored.expires_at,
    )
    .await
    .step("insert the successor token")?;
    let event = audit
        .event(AuditAction::Refresh, Outcome::Success)
        .actor(account.user_id)
        .target(AuditTarget::Session(stored.family_id.clone()));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")?;
    Ok(Rotation::Rotated {
        account,
        issued: IssuedRefreshToken {
            token,
            family_id: stored.family_id,
            authenticated_at,
        },
    })
}

/// Logout: revokes every live token of `user_id`'s session `family_id`, with its audit event.
pub async fn end_session(
    db: &Database,
    user_id: i64,
    family_id: &str,
    audit: &AuditContext,
) -> Result<(), ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    lock_account(&mut tx, user_id)
        .await
        .step("lock the account")?;
    revoke_family(&mut tx, family_id, RevokeReason::Logout)
        .await
        .step("revoke the session's tokens")?;
    let event = audit
        .event(AuditAction::Logout, Outcome::Success)
        .target(AuditTarget::Session(family_id.to_owned()));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")
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
        let families: Vec<String> = db::fetch_scalars!(
            &mut db.read().await?,
            sqlite: "SELECT family_id FROM refresh_tokens GROUP BY family_id
                     HAVING max(min(coalesce(revoked_at, expires_at), expires_at)) < $1
                     LIMIT $2",
            postgres: "SELECT family_id FROM refresh_tokens GROUP BY family_id
                       HAVING max(least(coalesce(revoked_at, expires_at), expires_at)) < $1
                       LIMIT $2",
            cutoff,
            PRUNE_BATCH
        )
        .await?;
        let mut tx = db.begin().await?;
        for family in &families {
            deleted += db::execute!(
                &mut tx,
                "DELETE FROM refresh_tokens WHERE family_id = $1",
                family
            )
            .await?;
            db::execute!(&mut tx, "DELETE FROM sessions WHERE id = $1", family).await?;
        }
        tx.commit().await?;
        if families.len() < PRUNE_BATCH as usize {
            return Ok(deleted);
        }
    }
}
