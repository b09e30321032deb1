//! A credential that crossed plain HTTP is compromised: anyone on the path may have read it.
//! It is revoked at once, on every instance, with an audit event naming its kind (never the
//! credential) and a notice to its owner (ASVS 5.0 4.1.2; `security::plain_http` calls this).
//!
//! Only genuine, live credentials are revoked: a forged, expired or already revoked one is
//! ignored, so nobody can make the service mail an account's owner by inventing tokens. What
//! the caller is answered does not depend on any of this.

use sha2::{Digest, Sha256};

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        api_key, lock_account,
        refresh_families::{RevokeReason, revoke_family},
        unix_now_i64,
    },
    db::{self, Timestamp},
    error::{ApiError, Step},
    mail::{self, Notice},
    state::AppState,
};

/// A credential as it arrived over plain HTTP, not yet checked.
#[derive(Debug, Clone, Copy)]
pub enum Exposed<'a> {
    AccessToken(&'a str),
    RefreshToken(&'a str),
    ApiKey(&'a str),
}

impl Exposed<'_> {
    /// How the audit event and the notice name it.
    fn kind(&self) -> &'static str {
        match self {
            Self::AccessToken(_) => "access token",
            Self::RefreshToken(_) => "refresh token",
            Self::ApiKey(_) => "API key",
        }
    }
}

/// What a genuine credential gives away, and so what must end.
enum Revocable {
    /// An access or refresh token: its whole session (refresh-token family).
    Session {
        user_id: i64,
        family_id: String,
    },
    ApiKey {
        user_id: i64,
        key_id: i64,
    },
}

impl Revocable {
    fn user_id(&self) -> i64 {
        match self {
            Self::Session { user_id, .. } | Self::ApiKey { user_id, .. } => *user_id,
        }
    }

    fn target(&self) -> AuditTarget {
        match self {
            Self::Session { family_id, .. } => AuditTarget::Session(family_id.clone()),
            Self::ApiKey { key_id, .. } => AuditTarget::ApiKey(*key_id),
        }
    }
}

/// Revokes `exposed` if it is genuine and live; `Ok` whether or not it was.
pub async fn revoke(
    state: &AppState,
    exposed: Exposed<'_>,
    audit: &AuditContext,
) -> Result<(), ApiError> {
    let Some(revocable) = genuine(state, exposed).await? else {
        return Ok(());
    };
    let user_id = revocable.user_id();
    let mut tx = state.db.begin().await.step("begin the transaction")?;
    lock_account(&mut tx, user_id)
        .await
        .step("lock the account")?;
    let revoked = match &revocable {
        Revocable::Session { family_id, .. } => {
            // Reuse: like a rotated token that comes back, two parties may now hold it.
            revoke_family(&mut tx, family_id, RevokeReason::Reuse)
                .await
                .step("revoke the exposed session")?
        }
        Revocable::ApiKey { key_id, .. } => db::execute!(
            &mut tx,
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            key_id,
            Timestamp::now()
        )
        .await
        .step("revoke the exposed key")?,
    };
    // Another request carrying the same credential revoked it first, and told the owner.
    if revoked == 0 {
        return Ok(());
    }
    let kind = exposed.kind();
    let event = audit
        .event(AuditAction::CredentialExposed, Outcome::Success)
        .actor(user_id)
        .target(revocable.target())
        .reason(format!("{kind} sent over plain HTTP; revoked"));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    mail::notify(
        &mut tx,
        &state.keyring,
        user_id,
        Notice::CredentialExposed { kind },
    )
    .await?;
    tx.commit().await.step("commit")?;
    if let Revocable::Session { family_id, .. } = &revocable {
        state.revocations.revoke_session(family_id).await;
    }
    Ok(())
}

/// What `exposed` would give its holder now, if anything.
async fn genuine(state: &AppState, exposed: Exposed<'_>) -> Result<Option<Revocable>, ApiError> {
    Ok(match exposed {
        Exposed::AccessToken(token) => {
            let Some(claims) = state.jwt.verify(token).await else {
                return Ok(None);
            };
            let Some(user_id) = claims.user_id() else {
                return Ok(None);
            };
            let live = state
                .revocations
                .permits(user_id, claims.ver, Some(&claims.sid))
                .await
                .step("check the token's revocation")?;
            live.then_some(Revocable::Session {
                user_id,
                family_id: claims.sid,
            })
        }
        Exposed::RefreshToken(token) => live_refresh_token(state, token)
            .await
            .step("look the refresh token up")?
            .map(|(user_id, family_id)| Revocable::Session { user_id, family_id }),
        Exposed::ApiKey(raw) => {
            let Some(key) = api_key::parse(raw) else {
                return Ok(None);
            };
            api_key::authenticate(&mut state.db.read().await?, key)
                .await
                .step("look the API key up")?
                .map(|key| Revocable::ApiKey {
                    user_id: key.user_id,
                    key_id: key.key_id,
                })
        }
    })
}

/// The owner and session of `token` if it is a live refresh token of an enabled account.
async fn live_refresh_token(state: &AppState, token: &str) -> sqlx::Result<Option<(i64, String)>> {
    let now = unix_now_i64();
    db::fetch_optional!(
        &mut state.db.read().await?,
        "SELECT r.user_id, r.family_id FROM refresh_tokens r JOIN users u ON u.id = r.user_id
         WHERE r.token_hash = $1 AND r.revoked_at IS NULL AND r.expires_at > $2
           AND NOT u.disabled",
        Sha256::digest(token.as_bytes()).to_vec(),
        now
    )
    .await
}
