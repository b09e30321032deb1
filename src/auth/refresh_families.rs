//! Revoking refresh-token families (a family is one login session): the step that logout,
//! reuse detection, the idle timeout, a password change, an administrator and a credential
//! sent over plain HTTP share. Below both `refresh` (which issues and rotates the tokens) and
//! `sessions` (which lists and ends them), so neither depends on the other for it.

use crate::{
    auth::unix_now_i64,
    db::{self, Transaction},
    vocabulary::vocabulary,
};

vocabulary! {
    /// Why a refresh token stopped working (`refresh_tokens.revoked_reason`).
    pub enum RevokeReason {
        /// Exchanged for its successor; presenting it again is reuse.
        Rotated = "rotated",
        /// Someone else may hold the family's tokens: a rotated one came back, or one of its
        /// tokens was sent over plain HTTP (`auth::exposure`).
        Reuse = "reuse",
        Logout = "logout",
        PasswordChange = "password_change",
        /// An administrator changed the account's role.
        Admin = "admin",
        Disabled = "disabled",
        /// Unused for longer than `SESSION_IDLE_TIMEOUT_SECS` (`auth::sessions`).
        Idle = "idle",
    }
}

/// Revokes every live token of a family, and returns how many; `tx` holds its account's lock.
pub(crate) async fn revoke_family(
    tx: &mut Transaction,
    family_id: &str,
    reason: RevokeReason,
) -> sqlx::Result<u64> {
    db::execute!(
        tx,
        "UPDATE refresh_tokens SET revoked_at = $2, revoked_reason = $3
         WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
        unix_now_i64(),
        reason
    )
    .await
}

/// Revokes every live token of every family of a user; `tx` holds the account's lock.
pub async fn revoke_all_of_user(
    tx: &mut Transaction,
    user_id: i64,
    reason: RevokeReason,
) -> sqlx::Result<()> {
    db::execute!(
        tx,
        "UPDATE refresh_tokens SET revoked_at = $2, revoked_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
        unix_now_i64(),
        reason
    )
    .await?;
    Ok(())
}
