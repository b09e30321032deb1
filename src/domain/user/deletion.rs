//! Deleting one's own account: what the person gave the service goes, what others rely on
//! stays, and no token of theirs works a moment longer.
//!
//! * Votes are the person's opinions: withdrawn, each through the counting trigger, so every
//!   film's counters drop by exactly that vote.
//! * Films are catalogue entries that others have voted on: kept, but handed to the curated
//!   catalogue (no owner, so only administrators edit them) and shown without an author.
//! * The row stays as a tombstone: its id is what the audit trail names and what the token
//!   version every instance follows belongs to (bumped, with the account disabled, so every
//!   access token is refused at once, on every instance, by the existing revocation path).
//!   Everything personal on it is erased: the sealed email and its blind index (the address
//!   can register again), the password hash, and the username, which becomes `deleted-<id>`
//!   (unregistrable: `-` is not a username character). Nothing shows the old name any more,
//!   so a newcomer who takes it inherits no films and no authorship.
//! * Refresh tokens, API keys, the second factor (TOTP secret, recovery codes), mailed links,
//!   known sign-in clients and the mails not sent yet (which carry the address) are deleted
//!   with it. No mail is sent about the deletion: the address is gone with the account.

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::mfa,
    db::{self, Database, Lock, Timestamp, Transaction},
    error::{ApiError, Step},
    mail,
};

use super::{UserCredentials, bump_token_version, ensure_another_active_admin, still_verified};

/// Deletes the account of `verified`, whose password was checked, unless it is the last
/// active administrator (409). Returns the new token version to announce, or `None` if a
/// password change or disable committed since the check (see `still_verified`): the password
/// checked is then no longer the account's.
///
/// The last-admin rule is the one `update_account` keeps, under the same advisory lock taken
/// before the account's row, so a deletion and a demotion (or two deletions) on two instances
/// count one after the other.
#[tracing::instrument(level = "debug", skip_all, fields(user_id = verified.id))]
pub async fn delete_account(
    db: &Database,
    verified: &UserCredentials,
    audit: &AuditContext,
) -> Result<Option<i64>, ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    tx.lock(Lock::AccountAdministration)
        .await
        .step("take the account administration lock")?;
    let still = still_verified(&mut tx, verified).await;
    let Some(account) = still.step("lock the account")? else {
        return Ok(None);
    };
    if account.role.is_admin() {
        ensure_another_active_admin(
            &mut tx,
            "The last active administrator cannot delete their account.",
        )
        .await?;
    }
    withdraw_contributions(&mut tx, account.id).await?;
    erase_account(&mut tx, account.id).await?;
    let version = bump_token_version(&mut tx, account.id)
        .await
        .step("bump the token version")?;
    let event = audit
        .event(AuditAction::AccountDelete, Outcome::Success)
        .actor(account.id)
        .target(AuditTarget::User(account.id));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")?;
    Ok(Some(version))
}

/// Withdraws the account's votes (the trigger adjusts each film's counters) and hands its
/// films to the curated catalogue.
async fn withdraw_contributions(tx: &mut Transaction, user_id: i64) -> Result<(), ApiError> {
    db::execute!(&mut *tx, "DELETE FROM votes WHERE user_id = $1", user_id)
        .await
        .step("withdraw the user's votes")?;
    db::execute!(
        tx,
        "UPDATE films SET owner_id = NULL, updated_at = $2 WHERE owner_id = $1",
        user_id,
        Timestamp::now()
    )
    .await
    .step("hand the user's films to the catalogue")?;
    Ok(())
}

/// Deletes the account's credentials and blanks its row into a disabled tombstone.
async fn erase_account(tx: &mut Transaction, user_id: i64) -> Result<(), ApiError> {
    db::execute!(
        &mut *tx,
        "DELETE FROM refresh_tokens WHERE user_id = $1",
        user_id
    )
    .await
    .step("delete the user's refresh tokens")?;
    // The sessions hold where and with what the user signed in (IP, user agent).
    db::execute!(&mut *tx, "DELETE FROM sessions WHERE user_id = $1", user_id)
        .await
        .step("delete the user's sessions")?;
    db::execute!(
        &mut *tx,
        "DELETE FROM account_tokens WHERE user_id = $1",
        user_id
    )
    .await
    .step("delete the user's verification and reset links")?;
    // Where the user signed in from, as keyed hashes: personal all the same.
    db::execute!(
        &mut *tx,
        "DELETE FROM known_sign_ins WHERE user_id = $1",
        user_id
    )
    .await
    .step("delete the user's known sign-in clients")?;
    // Unsent mails hold the address (and links) of an account that no longer exists.
    mail::discard_unsent(&mut *tx, user_id)
        .await
        .step("discard the user's unsent mails")?;
    db::execute!(&mut *tx, "DELETE FROM api_keys WHERE user_id = $1", user_id)
        .await
        .step("delete the user's API keys")?;
    mfa::remove_all(tx, user_id)
        .await
        .step("delete the user's second factor")?;
    let now = Timestamp::now();
    db::execute!(
        tx,
        "UPDATE users SET username = $2, email_sealed = NULL, email_index = NULL,
                          legacy_email = NULL, password_hash = '', disabled = $3,
                          deleted_at = $4, updated_at = $4
         WHERE id = $1",
        user_id,
        format!("deleted-{user_id}"),
        true,
        now
    )
    .await
    .step("erase the account")?;
    Ok(())
}
