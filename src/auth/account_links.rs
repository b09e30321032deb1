//! What the mailed links do: ask for a link (verification or password reset), verify an
//! email, reset a password. The tokens are `account_tokens`; the mails `account_mail`. A
//! link works only while the address it was mailed to is still its account's.
//!
//! Asking for a link answers the same whatever the address: the work runs after the answer
//! (see `routes::account_links`), and its outcome (sent, no such account, budget spent…)
//! reaches only the audit trail.

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        account_mail,
        account_tokens::{self, SpentToken, TokenPurpose, TokenRequest},
        password::HashReservation,
    },
    domain::{
        email,
        user::{self, Email, NewPassword, UserCredentials},
    },
    error::{ApiError, Step},
    state::AppState,
};

/// The links anyone may ask for by address (an email change is asked for by the signed-in
/// owner, see `domain::user::request_email_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedLink {
    EmailVerification,
    PasswordReset,
}

impl RequestedLink {
    pub fn purpose(self) -> TokenPurpose {
        match self {
            Self::EmailVerification => TokenPurpose::EmailVerification,
            Self::PasswordReset => TokenPurpose::PasswordReset,
        }
    }
}

/// Why no link was sent; the audit trail's words.
fn unsent_reason(account: &UserCredentials, link: RequestedLink) -> Option<&'static str> {
    if account.disabled {
        return Some("account disabled");
    }
    if link == RequestedLink::EmailVerification && account.email_verified {
        return Some("email already verified");
    }
    None
}

/// Mails `link` to `email` if an account has that address, may be sent one, and has not
/// spent its mail budget. Records what happened in the audit trail.
pub async fn request_link(
    state: &AppState,
    audit: &AuditContext,
    email: Email,
    link: RequestedLink,
) -> Result<(), ApiError> {
    let action = match link {
        RequestedLink::EmailVerification => AuditAction::EmailVerificationResend,
        RequestedLink::PasswordReset => AuditAction::PasswordResetRequest,
    };
    let purpose = link.purpose();
    let mut tx = state.db.begin().await.step("begin the transaction")?;
    let account = user::lock_account_by_email(&mut tx, &state.keyring, &email)
        .await
        .step("find the account of the address")?;
    let Some(account) = account else {
        let event = audit
            .event(action, Outcome::Failure)
            .reason("no account has this address");
        return audit::record(&mut tx, &event)
            .await
            .and(tx.commit().await)
            .step("record the request");
    };
    let target = AuditTarget::User(account.id);
    let within_budget = account_tokens::within_budget(&mut tx, account.id, purpose)
        .await
        .step("count the recent links")?;
    let event = match unsent_reason(&account, link) {
        Some(reason) => audit.event(action, Outcome::Failure).reason(reason),
        None if !within_budget => audit
            .event(action, Outcome::Denied)
            .reason("mail budget of the account spent"),
        None => {
            send_link(state, &mut tx, &account, email, link).await?;
            audit.event(action, Outcome::Success)
        }
    };
    audit::record(&mut tx, &event.target(target))
        .await
        .step("record the request")?;
    tx.commit().await.step("commit")
}

async fn send_link(
    state: &AppState,
    tx: &mut crate::db::Transaction,
    account: &UserCredentials,
    email: Email,
    link: RequestedLink,
) -> Result<(), ApiError> {
    let (keyring, settings) = (&state.keyring, &state.settings);
    let request = TokenRequest {
        user_id: account.id,
        purpose: link.purpose(),
        token_version: (link == RequestedLink::PasswordReset).then_some(account.token_version),
        email: &email,
    };
    let token = account_tokens::issue(tx, keyring, request).await?;
    let user_id = account.id;
    match link {
        RequestedLink::EmailVerification => {
            account_mail::verify_email(tx, keyring, settings, user_id, email, &token).await?
        }
        RequestedLink::PasswordReset => {
            account_mail::password_reset(tx, keyring, settings, user_id, email, &token).await?
        }
    }
    Ok(())
}

/// `spent` if the address it was mailed to is still its account's: a link mailed to an
/// address the account has left (or bound to none) is refused like an unknown one.
async fn bound_to_current_address(
    state: &AppState,
    tx: &mut crate::db::Transaction,
    spent: SpentToken,
) -> Result<Option<SpentToken>, ApiError> {
    let current = email::of_account(tx, &state.keyring, spent.user_id)
        .await
        .step("read the account's address")?;
    let bound = match (&spent.email, &current) {
        (Some(bound), Some(current)) => bound.is_same_address(current),
        _ => false,
    };
    Ok(bound.then_some(spent))
}

/// Spends a verification token and marks the account's address verified, if the token was
/// mailed to the account's address as it is now.
pub async fn verify_email(
    state: &AppState,
    audit: &AuditContext,
    token: &str,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await.step("begin the transaction")?;
    let purpose = TokenPurpose::EmailVerification;
    let spent = account_tokens::spend(&mut tx, &state.keyring, token, purpose)
        .await
        .step("spend the token")?;
    let spent = match spent {
        Some(spent) => bound_to_current_address(state, &mut tx, spent).await?,
        None => None,
    };
    let Some(spent) = spent else {
        let event = audit
            .event(AuditAction::EmailVerify, Outcome::Failure)
            .reason("unknown, expired or used token, or one for another address");
        state.audit.submit(event);
        return Err(ApiError::InvalidLinkToken);
    };
    user::mark_email_verified(&mut tx, spent.user_id)
        .await
        .step("mark the address verified")?;
    let event = audit
        .event(AuditAction::EmailVerify, Outcome::Success)
        .actor(spent.user_id)
        .target(AuditTarget::User(spent.user_id));
    audit::record(&mut tx, &event)
        .await
        .step("record the verification")?;
    tx.commit().await.step("commit")
}

/// Sets `new_password` for the account of a live reset token still bound to its token
/// version, and ends every session of the user (on every instance), with a notice mail
/// (`user::replace_password`). A
/// password changed any other way since the link was sent has moved the version on: the
/// token is refused like an unknown one.
pub async fn reset_password(
    state: &AppState,
    audit: &AuditContext,
    hashing: &HashReservation,
    token: &str,
    new_password: NewPassword,
) -> Result<(), ApiError> {
    // Hashed before the transaction: a slow hash must not hold the write lock.
    let new_hash = hashing.hash(new_password.into_secret()).await?;
    let mut tx = state.db.begin().await.step("begin the transaction")?;
    let spent = account_tokens::spend(&mut tx, &state.keyring, token, TokenPurpose::PasswordReset)
        .await
        .step("spend the token")?;
    let spent = match spent {
        Some(spent) => bound_to_current_address(state, &mut tx, spent).await?,
        None => None,
    };
    let account = match spent {
        Some(spent) => user::lock_account(&mut tx, spent.user_id)
            .await
            .step("lock the account")?
            .filter(|now| Some(now.token_version) == spent.token_version && !now.disabled),
        None => None,
    };
    let Some(account) = account else {
        let event = audit
            .event(AuditAction::PasswordReset, Outcome::Failure)
            .reason("unknown, expired, used or outdated token");
        state.audit.submit(event);
        return Err(ApiError::InvalidLinkToken);
    };
    let version = user::replace_password(&mut tx, &state.keyring, account.id, &new_hash).await?;
    let event = audit
        .event(AuditAction::PasswordReset, Outcome::Success)
        .actor(account.id)
        .target(AuditTarget::User(account.id));
    audit::record(&mut tx, &event)
        .await
        .step("record the reset")?;
    tx.commit().await.step("commit")?;
    state.revocations.set_version(account.id, version).await;
    Ok(())
}
