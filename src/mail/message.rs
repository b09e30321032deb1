//! What a mail says: its kind, recipient, subject and plain-text body.

use std::fmt;

use crate::{domain::email::Email, vocabulary::vocabulary};

vocabulary! {
    /// What a mail is about: stored with the row and shown to administrators instead of its
    /// body (which may carry a token).
    pub enum MailKind {
        VerifyEmail = "verify_email",
        PasswordReset = "password_reset",
        /// Someone tried to register with an address that already has an account.
        RegistrationAttempt = "registration_attempt",
        PasswordChanged = "password_changed",
        EmailChanged = "email_changed",
        NewSignIn = "new_sign_in",
        MfaEnabled = "mfa_enabled",
        MfaDisabled = "mfa_disabled",
        RecoveryCodeUsed = "recovery_code_used",
        ApiKeyCreated = "api_key_created",
        /// A credential of the account crossed plain HTTP and was revoked.
        CredentialExposed = "credential_exposed",
        /// To the current address: a change to another address was asked for.
        EmailChangeRequested = "email_change_requested",
        /// The link that confirms the new address of an email change.
        ConfirmNewEmail = "confirm_new_email",
        /// Someone asked to move their account to an address that already has one.
        EmailChangeAttempt = "email_change_attempt",
    }
}

/// One plain-text mail to one address, about one account (the recipient's, or the one a
/// new address is being confirmed for). `Debug` shows neither the address nor the body.
pub struct Mail {
    pub kind: MailKind,
    /// Deleting this account removes the mail if it is not sent yet.
    pub user_id: i64,
    pub to: Email,
    pub subject: String,
    pub body: String,
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// `{public_base_url}/static/index.html#/{page}?token={token}`: the token rides in the
/// fragment, which browsers never send, so no server log or `Referer` sees it. `page` is a
/// route of the browser client (`verify-email`, `reset-password`, `confirm-email`); tokens
/// are URL-safe.
pub fn link(public_base_url: &str, page: &str, token: &str) -> String {
    let base = public_base_url.trim_end_matches('/');
    format!("{base}/static/index.html#/{page}?token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_carries_its_token_in_the_fragment() {
        let link = link("https://films.example.com/", "verify-email", "T0k3n");
        assert_eq!(
            link,
            "https://films.example.com/static/index.html#/verify-email?token=T0k3n"
        );
        let (before_fragment, _) = link.split_once('#').unwrap();
        assert!(!before_fragment.contains("T0k3n"));
    }

    #[test]
    fn a_mail_never_prints_its_address_or_body() {
        let mail = Mail {
            kind: MailKind::PasswordReset,
            user_id: 1,
            to: Email::parse("secret.person@example.com".into()).unwrap(),
            subject: "Reset your password".into(),
            body: "token=SECRET-TOKEN".into(),
        };
        let shown = format!("{mail:?}");
        assert!(!shown.contains("secret.person") && !shown.contains("SECRET-TOKEN"));
    }
}
