//! Usernames: the one type both the domain and the audit trail name an account by. Its own
//! module, so that the audit trail can use it without depending on the user queries, which
//! themselves write audit events.

use std::borrow::Cow;

use validator::ValidationError;

use crate::domain::text;

/// 3–32 of `A-Z a-z 0-9 _`: nothing that can look like another name or break a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn validate(value: &str) -> Result<(), ValidationError> {
        text::check_length(value, 3, 32)?;
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ValidationError::new("charset").with_message(Cow::Borrowed(
                "may contain only letters A-Z, digits and underscores",
            )));
        }
        Ok(())
    }

    pub fn parse(value: String) -> Result<Self, ValidationError> {
        Self::validate(&value).map(|()| Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_documented_pattern() {
        for ok in ["bob", "Alice_99", &"a".repeat(32)] {
            assert!(Username::validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(33),
            "bob smith",
            "bob-smith",
            "böb",
            "bob'--",
            "",
        ] {
            assert!(Username::validate(bad).is_err(), "{bad}");
        }
    }
}
