//! A second factor: TOTP with recovery codes (`totp`, `recovery_codes`), and the challenge
//! (`challenge`) that stands between a correct password and a session for an account that
//! has it on.
//!
//! Every change here runs in one transaction that first locks the account's row (see
//! `user::lock_account`): on PostgreSQL two instances handed the same code or the same
//! challenge at once take turns, and the second finds the step or the challenge used.

pub mod challenge;
pub mod recovery_codes;
pub mod totp;

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    crypto::Keyring,
    db::{self, Database, Executor, Transaction},
    domain::user::{self, UserCredentials},
    error::{ApiError, Step},
    mail::{self, Notice},
};

use self::{challenge::Challenge, totp::Enrolment};

/// Whether the account has TOTP on (confirmed).
pub async fn is_enabled(db: &mut impl Executor, user_id: i64) -> sqlx::Result<bool> {
    let found: Option<i64> = db::fetch_optional_scalar!(
        db,
        "SELECT user_id FROM totp_credentials WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        user_id
    )
    .await?;
    Ok(found.is_some())
}

/// Which factor a right code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    /// A recovery code, now spent; `left` are still unused.
    RecoveryCode {
        left: i64,
    },
}

/// A transaction with the account's row locked; `Unauthenticated` if the account is gone.
async fn begin_for(db: &Database, user_id: i64) -> Result<Transaction, ApiError> {
    Ok(begin_with_account(db, user_id).await?.0)
}

async fn begin_with_account(
    db: &Database,
    user_id: i64,
) -> Result<(Transaction, UserCredentials), ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    let account = user::lock_account(&mut tx, user_id)
        .await
        .step("lock the account")?
        .ok_or(ApiError::Unauthenticated)?;
    Ok((tx, account))
}

/// Starts (or restarts) a TOTP enrolment: a new secret, pending until confirmed. 409 if the
/// account already has TOTP on.
pub async fn begin_enrolment(
    db: &Database,
    keyring: &Keyring,
    user_id: i64,
    audit: &AuditContext,
) -> Result<Enrolment, ApiError> {
    let (mut tx, account) = begin_with_account(db, user_id).await?;
    let (secret, enrolment) = totp::new_secret(&account.username)?;
    let stored = totp::store_pending(&mut tx, keyring, user_id, secret.as_ref()).await;
    if !stored.step("store the pending secret")? {
        return Err(ApiError::Conflict(
            "TOTP is already on for this account; turn it off first to enrol a new device.",
        ));
    }
    record(&mut tx, audit, AuditAction::MfaEnrol, user_id, None).await?;
    tx.commit().await.step("commit")?;
    Ok(enrolment)
}

/// Confirms the pending enrolment with a code of its secret: TOTP is on from now, and the
/// account gets fresh recovery codes (returned, the only time they are shown). `None`: the
/// code is wrong. 409 if no enrolment is pending.
pub async fn confirm(
    db: &Database,
    keyring: &Keyring,
    user_id: i64,
    code: &str,
    audit: &AuditContext,
) -> Result<Option<Vec<String>>, ApiError> {
    let mut tx = begin_for(db, user_id).await?;
    let state = totp::state(&mut tx, user_id).await;
    if state.step("read the TOTP state")? != Some(false) {
        return Err(ApiError::Conflict(
            "No TOTP enrolment is pending: start one with POST /api/v1/users/me/mfa/totp.",
        ));
    }
    if !totp::accept(&mut tx, keyring, user_id, code, false).await? {
        return Ok(None);
    }
    let codes = recovery_codes::replace(&mut tx, user_id)
        .await
        .step("issue the recovery codes")?;
    record(&mut tx, audit, AuditAction::MfaConfirm, user_id, None).await?;
    mail::notify(&mut tx, keyring, user_id, Notice::MfaEnabled)
        .await
        .step("write the MFA-enabled notice")?;
    tx.commit().await.step("commit")?;
    Ok(Some(codes))
}

/// Checks `code` as the account's TOTP code, or else as one of its recovery codes, and spends
/// it if right; a spent recovery code is recorded in the audit trail and told to the owner.
/// `tx` has the account locked.
async fn spend_code(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    code: &str,
    audit: &AuditContext,
) -> Result<Option<Factor>, ApiError> {
    if totp::accept(tx, keyring, user_id, code, true).await? {
        return Ok(Some(Factor::Totp));
    }
    let spent = recovery_codes::spend(tx, user_id, code).await;
    let Some(left) = spent.step("spend the recovery code")? else {
        return Ok(None);
    };
    let reason = format!("{left} recovery codes left");
    record(
        tx,
        audit,
        AuditAction::RecoveryCodeUse,
        user_id,
        Some(reason),
    )
    .await?;
    mail::notify(tx, keyring, user_id, Notice::RecoveryCodeUsed { left })
        .await
        .step("write the recovery-code notice")?;
    Ok(Some(Factor::RecoveryCode { left }))
}

/// What the second step of a login found.
pub enum ChallengeOutcome {
    /// The code was right: the challenge is spent.
    Passed(Factor),
    /// The code was wrong: counted against the challenge (the fifth kills it).
    WrongCode,
    /// The challenge died or was spent since it was looked up.
    Gone,
}

/// Answers `challenge` with `code`.
pub async fn answer_challenge(
    db: &Database,
    keyring: &Keyring,
    challenge: &Challenge,
    code: &str,
    audit: &AuditContext,
) -> Result<ChallengeOutcome, ApiError> {
    let mut tx = begin_for(db, challenge.user_id).await?;
    // Spent first: of two requests racing with one token, the second finds it gone.
    if !challenge::spend(&mut tx, challenge.id)
        .await
        .step("spend the challenge")?
    {
        return Ok(ChallengeOutcome::Gone);
    }
    let outcome = match spend_code(&mut tx, keyring, challenge.user_id, code, audit).await? {
        Some(factor) => {
            tx.commit().await.step("commit")?;
            return Ok(ChallengeOutcome::Passed(factor));
        }
        None => ChallengeOutcome::WrongCode,
    };
    // Wrong: the challenge lives on, one wrong code closer to its end.
    drop(tx);
    let mut tx = begin_for(db, challenge.user_id).await?;
    challenge::record_wrong_code(&mut tx, challenge.id)
        .await
        .step("count the wrong code")?;
    tx.commit().await.step("commit")?;
    Ok(outcome)
}

/// Turns TOTP off for the account if `code` is right (a TOTP or a recovery code): the secret,
/// the recovery codes and any open challenge go. `false`: the code is wrong, nothing changed.
pub async fn disable(
    db: &Database,
    keyring: &Keyring,
    user_id: i64,
    code: &str,
    audit: &AuditContext,
) -> Result<bool, ApiError> {
    let mut tx = begin_for(db, user_id).await?;
    if spend_code(&mut tx, keyring, user_id, code, audit)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    remove_all(&mut tx, user_id)
        .await
        .step("remove the second factor")?;
    record(&mut tx, audit, AuditAction::MfaDisable, user_id, None).await?;
    mail::notify(&mut tx, keyring, user_id, Notice::MfaDisabled)
        .await
        .step("write the MFA-disabled notice")?;
    tx.commit().await.step("commit")?;
    Ok(true)
}

/// Everything of the account's second factor: for turning it off and for account deletion.
pub(crate) async fn remove_all(tx: &mut Transaction, user_id: i64) -> sqlx::Result<()> {
    totp::remove(tx, user_id).await?;
    db::execute!(
        &mut *tx,
        "DELETE FROM recovery_codes WHERE user_id = $1",
        user_id
    )
    .await?;
    db::execute!(tx, "DELETE FROM mfa_challenges WHERE user_id = $1", user_id).await?;
    Ok(())
}

async fn record(
    tx: &mut Transaction,
    audit: &AuditContext,
    action: AuditAction,
    user_id: i64,
    reason: Option<String>,
) -> Result<(), ApiError> {
    let mut event = audit
        .event(action, Outcome::Success)
        .actor(user_id)
        .target(AuditTarget::User(user_id));
    if let Some(reason) = reason {
        event = event.reason(reason);
    }
    audit::record(tx, &event)
        .await
        .step("record the audit event")
}
