//! Changing one's email address (issue 16, item 5): the signed-in owner asks, with their
//! password (`PUT /users/me/email`); the new address is mailed a link; the account keeps its
//! current address until that link is opened (`POST /auth/confirm-email`).
//!
//! * The request answers the same whether or not another account holds the new address: the
//!   holder is mailed a notice instead of the link, and both paths issue a token, write two
//!   mails and an audit event in one transaction, so neither answer nor timing tells them
//!   apart. The current address is told of the request either way.
//! * The link's token is bound to the new address (sealed with it) and to the account's token
//!   version: changing the password, which the notice to the current address suggests,
//!   cancels the change. A newer request supersedes an older one.
//! * Confirming stores the new address (sealed, indexed), counts it as verified, tells the old
//!   address, and spends every link mailed before: none of them was mailed to the new address.

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        account_mail,
        account_tokens::{self, SpentToken, TokenPurpose, TokenRequest},
    },
    db::Transaction,
    domain::{
        email::{self, Email},
        user::{self, UserCredentials},
    },
    error::{ApiError, Step},
    mail::{self, Notice},
    state::AppState,
};

/// Asks to move the account of `verified` (whose password was checked) to `new_email`.
/// `false` if a password change or disable committed since the check: the password checked
/// is no longer the account's (the caller answers as for a wrong one).
#[tracing::instrument(level = "debug", skip_all, fields(user_id = verified.id))]
pub async fn request(
    state: &AppState,
    audit: &AuditContext,
    verified: &UserCredentials,
    new_email: Email,
) -> Result<bool, ApiError> {
    let keyring = &state.keyring;
    let mut tx = state.db.begin().await.step("begin the transaction")?;
    let still = user::still_verified(&mut tx, verified).await;
    let Some(account) = still.step("lock the account")? else {
        return Ok(false);
    };
    let current = email::of_account(&mut tx, keyring, account.id)
        .await
        .step("read the account's address")?;
    if current.is_some_and(|current| current.is_same_address(&new_email)) {
        return Err(ApiError::invalid_field(
            "new_email",
            "is already the account's address",
        ));
    }
    let action = AuditAction::EmailChangeRequest;
    let purpose = TokenPurpose::EmailChange;
    let within_budget = account_tokens::within_budget(&mut tx, account.id, purpose)
        .await
        .step("count the recent links")?;
    let event = if !within_budget {
        audit
            .event(action, Outcome::Denied)
            .reason("mail budget of the account spent")
    } else if send_mails(state, &mut tx, &account, new_email).await? {
        audit.event(action, Outcome::Success)
    } else {
        audit
            .event(action, Outcome::Failure)
            .reason("address taken; its owner was notified")
    };
    let event = event
        .actor(account.id)
        .target(AuditTarget::User(account.id));
    audit::record(&mut tx, &event)
        .await
        .step("record the request")?;
    tx.commit().await.step("commit")?;
    Ok(true)
}

/// Writes the request's mails: the notice to the current address, and to the new one the
/// link, or, if another account holds it, a notice to that account (`false`). The token is
/// issued either way, so both paths do the same work and spend the same budget; a token for a
/// taken address is never mailed.
async fn send_mails(
    state: &AppState,
    tx: &mut Transaction,
    account: &UserCredentials,
    new_email: Email,
) -> Result<bool, ApiError> {
    let (keyring, user_id) = (&state.keyring, account.id);
    let holder = email::holder(tx, keyring, &new_email, Some(user_id))
        .await
        .step("look for the holder of the new address")?;
    let request = TokenRequest {
        user_id,
        purpose: TokenPurpose::EmailChange,
        token_version: Some(account.token_version),
        email: &new_email,
    };
    let token = account_tokens::issue(tx, keyring, request)
        .await
        .step("issue the token")?;
    mail::notify(tx, keyring, user_id, Notice::EmailChangeRequested)
        .await
        .step("write the notice to the current address")?;
    match holder {
        Some(holder) => {
            // To the address as its owner stored it, which may differ in case from the typed.
            let stored = email::of_account(tx, keyring, holder)
                .await
                .step("read the holder's address")?;
            let to = stored.unwrap_or(new_email);
            account_mail::email_change_attempt(tx, keyring, holder, to)
                .await
                .step("write the notice to the holder of the new address")?
        }
        None => account_mail::confirm_new_email(
            tx,
            keyring,
            &state.settings,
            user_id,
            new_email,
            &token,
        )
        .await
        .step("write the link to the new address")?,
    }
    Ok(holder.is_none())
}

/// Makes the address a live email-change `token` was mailed to its account's address.
/// Unknown, expired, used, superseded and outdated (the password changed since) tokens are
/// all refused alike (400). An address another account took since the request is a 409: the
/// caller reads mail there, so it tells them nothing new.
pub async fn confirm(state: &AppState, audit: &AuditContext, token: &str) -> Result<(), ApiError> {
    let keyring = &state.keyring;
    let action = AuditAction::EmailChange;
    let mut tx = email::begin_indexing(&state.db)
        .await
        .step("begin the transaction")?;
    let spent = account_tokens::spend(&mut tx, keyring, token, TokenPurpose::EmailChange)
        .await
        .step("spend the token")?;
    let change = match spent {
        Some(spent) => live_change(&mut tx, spent).await?,
        None => None,
    };
    let Some((user_id, new_email)) = change else {
        let event = audit
            .event(action, Outcome::Failure)
            .reason("unknown, expired, used or outdated token");
        state.audit.submit(event);
        return Err(ApiError::InvalidLinkToken);
    };
    let target = AuditTarget::User(user_id);
    let holder = email::holder(&mut tx, keyring, &new_email, Some(user_id))
        .await
        .step("look for the holder of the new address")?;
    if holder.is_some() {
        let event = audit
            .event(action, Outcome::Failure)
            .target(target)
            .reason("another account took the address since the request");
        state.audit.submit(event);
        return Err(ApiError::Conflict("The email is already registered."));
    }
    // Told before the address is replaced: the notice goes to the address being left.
    mail::notify(&mut tx, keyring, user_id, Notice::EmailChanged)
        .await
        .step("write the notice to the old address")?;
    email::replace(&mut tx, keyring, user_id, &new_email)
        .await
        .step("store the new address")?;
    user::mark_email_verified(&mut tx, user_id)
        .await
        .step("mark the new address verified")?;
    account_tokens::spend_all_of(&mut tx, user_id)
        .await
        .step("spend the links mailed before")?;
    let event = audit
        .event(action, Outcome::Success)
        .actor(user_id)
        .target(target);
    audit::record(&mut tx, &event)
        .await
        .step("record the change")?;
    tx.commit().await.step("commit")
}

/// The account and new address of a spent token, if the account is still enabled and at the
/// token version the token was issued at.
async fn live_change(
    tx: &mut Transaction,
    spent: SpentToken,
) -> Result<Option<(i64, Email)>, ApiError> {
    let account = user::lock_account(tx, spent.user_id)
        .await
        .step("lock the account")?
        .filter(|now| Some(now.token_version) == spent.token_version && !now.disabled);
    Ok(account
        .zip(spent.email)
        .map(|(account, email)| (account.id, email)))
}
