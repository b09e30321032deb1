//! A new password and its rules (ASVS 5.0 V6.2), checked wherever one is set: registration,
//! password change, password reset and `create-admin`.
//!
//! * 12–128 characters (6.2.1 asks for at least 8 and recommends 15; 6.2.9 asks that 64 be
//!   allowed). 12 because the strength estimate below refuses the guessable long ones too.
//! * Not one of the 10 000+ most common passwords, whatever its case (6.2.4).
//! * Not containing the username or the email's local part (6.2.11, context-specific words).
//! * Not guessable: zxcvbn, with the username and email as words it knows, must estimate at
//!   least 10^8 guesses (score 3), so an online attacker gets nowhere within the login limits
//!   and an offline one pays 10^8 argon2id hashes (`docs/security.md`).
//!
//! No composition rules (6.2.5). Each refusal names its rule by a code (`FieldError::code`),
//! never by the password.

use std::{borrow::Cow, fmt};

use secrecy::SecretString;
use validator::ValidationError;
use zxcvbn::Score;

use crate::{auth::common_passwords, domain::text};

/// Shorter names and local parts occur inside too many ordinary words to be refused.
const MIN_PERSONAL_CHARS: usize = 4;
/// zxcvbn's "safely unguessable": at least 10^8 guesses.
const MIN_SCORE: Score = Score::Three;

/// Whose password it is: what it must not contain, and what zxcvbn must not credit.
#[derive(Debug, Clone, Copy)]
pub struct PasswordOwner<'a> {
    pub username: &'a str,
    pub email: &'a str,
}

impl PasswordOwner<'_> {
    fn email_local_part(&self) -> &str {
        self.email
            .rsplit_once('@')
            .map_or(self.email, |(local, _)| local)
    }
}

/// A password that passed every rule for its owner.
pub struct NewPassword(SecretString);

impl NewPassword {
    pub const MIN_CHARS: u64 = 12;
    pub const MAX_CHARS: u64 = 128;

    /// The rules that need no owner (length, common list): for request validation, before
    /// the owner is known.
    pub fn validate(value: &str) -> Result<(), ValidationError> {
        text::check_length(value, Self::MIN_CHARS, Self::MAX_CHARS)?;
        if common_passwords::is_common(value) {
            return Err(refusal(
                "common",
                "is one of the most commonly used passwords; choose another",
            ));
        }
        Ok(())
    }

    /// Every rule, for `owner`'s account.
    pub fn parse(value: String, owner: PasswordOwner<'_>) -> Result<Self, ValidationError> {
        Self::validate(&value)?;
        check_personal(&value, owner)?;
        check_strength(&value, owner)?;
        Ok(Self(SecretString::from(value)))
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

fn refusal(code: &'static str, message: &'static str) -> ValidationError {
    ValidationError::new(code).with_message(Cow::Borrowed(message))
}

fn check_personal(value: &str, owner: PasswordOwner<'_>) -> Result<(), ValidationError> {
    let password = value.to_lowercase();
    let contains = |part: &str| {
        part.chars().count() >= MIN_PERSONAL_CHARS && password.contains(&part.to_lowercase())
    };
    if contains(owner.username) {
        return Err(refusal(
            "contains_username",
            "must not contain your username",
        ));
    }
    if contains(owner.email_local_part()) {
        return Err(refusal(
            "contains_email",
            "must not contain your email address or the part before its @",
        ));
    }
    Ok(())
}

fn check_strength(value: &str, owner: PasswordOwner<'_>) -> Result<(), ValidationError> {
    let user_inputs = [owner.username, owner.email, owner.email_local_part()];
    if zxcvbn::zxcvbn(value, &user_inputs).score() < MIN_SCORE {
        return Err(refusal(
            "guessable",
            "is too easy to guess; a few unrelated words make a strong password",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: PasswordOwner<'static> = PasswordOwner {
        username: "marguerite",
        email: "m.durand@example.com",
    };

    fn code_of(password: &str) -> Option<String> {
        NewPassword::parse(password.into(), OWNER)
            .err()
            .map(|error| error.code.into_owned())
    }

    #[test]
    fn each_rule_is_refused_with_its_code() {
        assert_eq!(code_of("short-pass1").as_deref(), Some("length"));
        assert_eq!(code_of(&"x".repeat(129)).as_deref(), Some("length"));
        assert_eq!(code_of("Password1234").as_deref(), Some("common"));
        assert_eq!(
            code_of("violet-MARGUERITE-kettle").as_deref(),
            Some("contains_username")
        );
        assert_eq!(
            code_of("violet-kettle-m.durand").as_deref(),
            Some("contains_email")
        );
        assert_eq!(code_of("abcdefabcdefabcdef").as_deref(), Some("guessable"));
        assert_eq!(code_of("violet-kettle-umbrella"), None);
    }

    #[test]
    fn a_short_username_is_not_a_forbidden_substring() {
        let owner = PasswordOwner {
            username: "amy",
            email: "amy@example.com",
        };
        assert!(NewPassword::parse("dreamy-kettle-umbrella".into(), owner).is_ok());
    }

    #[test]
    fn a_new_password_never_prints_itself() {
        let password = NewPassword::parse("violet-kettle-umbrella".into(), OWNER).unwrap();
        assert!(!format!("{password:?}").contains("violet"));
    }
}
