//! Security notices: a mail to the account's own address when something about it changed,
//! so its owner learns of a change they did not make (issue 16, item 6).

use crate::{
    crypto::Keyring,
    db::{self, Timestamp, Transaction},
    domain::email::Email,
    error::ApiError,
};

use super::{Mail, MailKind, enqueue};

/// What happened to the account.
pub enum Notice<'a> {
    PasswordChanged,
    ApiKeyCreated {
        name: &'a str,
        scopes: &'a [&'a str],
    },
    /// `kind` names the credential ("access token", "API key"), never its value.
    CredentialExposed {
        kind: &'a str,
    },
    /// Sent to the current address, which stays the account's until the new one is confirmed.
    EmailChangeRequested,
    /// Sent to the address the account just left.
    EmailChanged,
    /// The second factor was turned on: an account taken over and "protected" by its thief
    /// locks its owner out.
    MfaEnabled,
    /// The second factor was turned off.
    MfaDisabled,
    /// A recovery code stood in for the authenticator: its owner lost the device, or someone
    /// who has the password found the codes.
    RecoveryCodeUsed {
        left: i64,
    },
    /// A sign-in from a client (IP address and user agent) the account never used before.
    NewSignIn {
        ip: Option<&'a str>,
        user_agent: Option<&'a str>,
    },
}

impl Notice<'_> {
    fn kind(&self) -> MailKind {
        match self {
            Self::PasswordChanged => MailKind::PasswordChanged,
            Self::ApiKeyCreated { .. } => MailKind::ApiKeyCreated,
            Self::CredentialExposed { .. } => MailKind::CredentialExposed,
            Self::EmailChangeRequested => MailKind::EmailChangeRequested,
            Self::EmailChanged => MailKind::EmailChanged,
            Self::MfaEnabled => MailKind::MfaEnabled,
            Self::MfaDisabled => MailKind::MfaDisabled,
            Self::RecoveryCodeUsed { .. } => MailKind::RecoveryCodeUsed,
            Self::NewSignIn { .. } => MailKind::NewSignIn,
        }
    }

    fn subject(&self) -> &'static str {
        match self {
            Self::PasswordChanged => "Your filmvault password was changed",
            Self::ApiKeyCreated { .. } => "A new API key was created for your filmvault account",
            Self::CredentialExposed { .. } => {
                "A filmvault credential of yours was sent unencrypted and revoked"
            }
            Self::EmailChangeRequested => "A change of your filmvault email address was requested",
            Self::EmailChanged => "Your filmvault email address was changed",
            Self::MfaEnabled => "Two-step sign-in was turned on for your filmvault account",
            Self::MfaDisabled => "Two-step sign-in was turned off for your filmvault account",
            Self::RecoveryCodeUsed { .. } => "A recovery code of your filmvault account was used",
            Self::NewSignIn { .. } => "New sign-in to your filmvault account",
        }
    }

    fn body(&self, username: &str, at: Timestamp) -> String {
        let what = match self {
            Self::PasswordChanged => format!(
                "the password of your filmvault account was changed at {at}.\n\
                 Every session was signed out; API keys stay valid."
            ),
            Self::ApiKeyCreated { name, scopes } => format!(
                "an API key named \"{name}\" (scopes: {}) was created for your filmvault \
                 account at {at}.",
                scopes.join(", ")
            ),
            Self::CredentialExposed { kind } => format!(
                "your filmvault {kind} was sent over plain HTTP at {at}, where anyone \
                 on the network path could read it, so it was revoked at once.\n\
                 Sign in again, or create a new key, and make sure your client uses https://."
            ),
            Self::EmailChangeRequested => format!(
                "someone signed in to your filmvault account asked at {at} to move it to \
                 another email address. This address stays the account's until the new one is \
                 confirmed from the link mailed there.\n\
                 Changing your password cancels the change."
            ),
            Self::EmailChanged => format!(
                "the email address of your filmvault account was changed at {at}: this \
                 address is no longer the account's, and no more mail about it comes here."
            ),
            Self::MfaEnabled => format!(
                "two-step sign-in (an authenticator app's code after the password) was turned \
                 on for your filmvault account at {at}. Signing in now needs a code from the \
                 device that was enrolled, or one of the recovery codes shown then."
            ),
            Self::MfaDisabled => format!(
                "two-step sign-in was turned off for your filmvault account at {at}: from now \
                 on the password alone signs in."
            ),
            Self::RecoveryCodeUsed { left } => format!(
                "one of the recovery codes of your filmvault account was used at {at} in place \
                 of the authenticator app's code; {left} of them are left. Each works once."
            ),
            Self::NewSignIn { ip, user_agent } => format!(
                "your filmvault account was signed in to at {at} from a device or place it \
                 was not used from before:\n\n  IP address: {}\n  Browser or app: {}",
                ip.unwrap_or("unknown"),
                user_agent.unwrap_or("unknown")
            ),
        };
        format!(
            "Hello {username},\n\n{what}\n\nIf this was you, there is nothing to do.\n\
             If it was not, change your password now, revoke the API keys you do not know, \
             and tell an administrator.\n"
        )
    }
}

/// Writes `notice` for user `user_id` to the outbox in `tx`, the transaction of the change.
/// An account without a stored address (an old row an administrator must settle) gets none.
pub async fn notify(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    notice: Notice<'_>,
) -> Result<(), ApiError> {
    let (username, sealed): (String, Option<Vec<u8>>) = db::fetch_one!(
        &mut *tx,
        "SELECT username, email_sealed FROM users WHERE id = $1",
        user_id
    )
    .await?;
    let Some(sealed) = sealed else {
        tracing::warn!(user_id, kind = %notice.kind(), "no sealed address: no notice sent");
        return Ok(());
    };
    let mail = Mail {
        kind: notice.kind(),
        user_id,
        to: Email::open(keyring, user_id, &sealed)?,
        subject: notice.subject().to_owned(),
        body: notice.body(&username, Timestamp::now()),
    };
    enqueue(tx, keyring, mail).await?;
    Ok(())
}
