//! The password check of a login. Unknown user, wrong password and disabled account cost the
//! same one argon2 verification (the dummy hash stands in for a missing account), so the
//! time taken does not tell them apart; only the refusal's reason, for the audit trail, does.

use secrecy::SecretString;

use crate::{
    auth::password::{HashReservation, Verification},
    db::Database,
    domain::user::{self, UserCredentials},
    error::{ApiError, Step},
};

pub enum CredentialCheck {
    Verified(VerifiedAccount),
    Refused(Refusal),
}

/// An enabled account whose password was just checked.
pub struct VerifiedAccount {
    pub account: UserCredentials,
    /// A fresh hash of the password at today's parameters, when the stored one is older: the
    /// plaintext is at hand only now.
    pub upgraded_hash: Option<String>,
}

/// Why a login was refused. The client gets the same 401 for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownUser,
    WrongPassword,
    AccountDisabled,
}

impl Refusal {
    /// In the audit trail's words.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown user",
            Self::WrongPassword => "wrong password",
            Self::AccountDisabled => "account disabled",
        }
    }
}

/// Checks `password` against the account `username`, in the caller's place in the hashing
/// queue.
pub async fn check_credentials(
    db: &Database,
    hashing: &HashReservation,
    username: &str,
    password: SecretString,
) -> Result<CredentialCheck, ApiError> {
    let account = user::find_credentials(&mut db.read().await?, username)
        .await
        .step("read the account's credentials")?;
    let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
    let verification = hashing
        .verify(password.clone(), stored_hash)
        .await
        .step("verify the password")?;
    let (account, needs_rehash) = match (account, verification) {
        (Some(account), Verification::Valid { needs_rehash }) if !account.disabled => {
            (account, needs_rehash)
        }
        (Some(_), Verification::Valid { .. }) => {
            return Ok(CredentialCheck::Refused(Refusal::AccountDisabled));
        }
        (Some(_), Verification::Invalid) => {
            return Ok(CredentialCheck::Refused(Refusal::WrongPassword));
        }
        (None, _) => return Ok(CredentialCheck::Refused(Refusal::UnknownUser)),
    };
    let upgraded_hash = if needs_rehash {
        let hash = hashing.hash(password).await;
        Some(hash.step("hash the password at today's parameters")?)
    } else {
        None
    };
    Ok(CredentialCheck::Verified(VerifiedAccount {
        account,
        upgraded_hash,
    }))
}
