//! One budget for guesses at an account's password, whichever route takes them. Login and
//! password change both check a password; if the second had a looser budget, a stolen access
//! token would be a faster guessing door than the login form.
//!
//! Before argon2 runs, an attempt must pass the suspicious-login locks and spend one unit of
//! the per-username throttle (so a refusal says nothing about the password); a wrong password
//! then counts as a failed login for the suspicious-pattern detection.

use crate::{
    audit::{AuditAction, AuditContext, AuditTarget, Outcome},
    error::ApiError,
    security::{client_ip::ClientKey, login_monitor::Suspicion},
    state::AppState,
};

/// One password check against the account `username`, admitted by the budget.
pub struct PasswordAttempt<'a> {
    state: &'a AppState,
    audit: &'a AuditContext,
    username: &'a str,
    client: ClientKey,
}

/// An attempt refused before the password was looked at.
pub struct Refused {
    /// For the audit trail.
    pub reason: &'static str,
    pub error: ApiError,
}

impl<'a> PasswordAttempt<'a> {
    /// Charges one attempt at `username` from `client`.
    pub async fn start(
        state: &'a AppState,
        audit: &'a AuditContext,
        client: ClientKey,
        username: &'a str,
    ) -> Result<Self, Refused> {
        let locked = state
            .login_monitor
            .locked_for(username, client)
            .await
            .map_err(|unavailable| Refused {
                reason: "login locks unavailable",
                error: unavailable.into(),
            })?;
        if let Some(retry_after) = locked {
            return Err(Refused {
                reason: "locked after suspicious failures",
                error: ApiError::LoginLocked { retry_after },
            });
        }
        state
            .login_throttle
            .attempt(username)
            .await
            .map_err(|error| Refused {
                reason: "username rate limit",
                error,
            })?;
        Ok(Self {
            state,
            audit,
            username,
            client,
        })
    }

    /// The password was wrong (or the account unknown or disabled). A failure that cannot
    /// be counted is an error: nothing escapes the pattern detection.
    pub async fn failed(&self) -> Result<(), ApiError> {
        let suspicions = self
            .state
            .login_monitor
            .failed(self.username, self.client)
            .await?;
        for suspicion in &suspicions {
            self.report(suspicion);
        }
        Ok(())
    }

    /// The password was right: the username's earlier failures are forgiven (a leniency: if
    /// Redis cannot be told, they simply age out of the window).
    pub async fn succeeded(&self) {
        if let Err(error) = self.state.login_monitor.succeeded(self.username).await {
            tracing::warn!(%error, "a login's earlier failures could not be forgotten");
        }
    }

    fn report(&self, suspicion: &Suspicion) {
        let lockout = self.state.settings.suspicious_logins.lockout.as_secs();
        let (target, reason) = match suspicion {
            Suspicion::ManyClientsForOneUsername { username, clients } => (
                AuditTarget::login_name(username),
                format!(
                    "failed logins from {clients} clients; this username is locked for {lockout} s"
                ),
            ),
            Suspicion::ManyUsernamesFromOneClient { client, usernames } => (
                AuditTarget::Client(*client),
                format!(
                    "failed logins for {usernames} usernames; this client is blocked for {lockout} s"
                ),
            ),
        };
        tracing::warn!(target: "security", %target, %reason, "suspicious login activity");
        let event = self
            .audit
            .event(AuditAction::SuspiciousLogin, Outcome::Failure)
            .target(target)
            .reason(reason);
        self.state.audit.submit(event);
    }
}
