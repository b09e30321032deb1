//! The blocklist of common passwords that ASVS 5.0 (6.2.4) asks registration and password
//! change to check: at least the 3000 most common passwords that meet our own length rule.
//! The other rules are `domain::user::NewPassword`'s.
//!
//! `common_passwords.txt` holds, lower-cased, the 10 000 most frequent passwords of 12–128
//! characters from the SecLists "10 million passwords" top-1M list, plus the long entries of
//! Django's and zxcvbn-ts's lists; shorter ones are left out because the length rule already
//! refuses them. Sources and licences are in NOTICE.

use std::{collections::HashSet, sync::LazyLock};

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common_passwords.txt").lines().collect());

/// Case-insensitive: `Password12345` is as guessable as `password12345`.
pub fn is_common(password: &str) -> bool {
    COMMON_PASSWORDS.contains(password.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_covers_at_least_the_asvs_minimum_of_policy_conforming_passwords() {
        assert!(COMMON_PASSWORDS.len() >= 3000);
        assert!(COMMON_PASSWORDS.iter().all(|p| p.chars().count() >= 12));
    }

    #[test]
    fn common_passwords_are_found_whatever_their_case() {
        assert!(is_common("password1234"));
        assert!(is_common("PassWord1234"));
        assert!(is_common("qwertyuiopasdfgh"));
        assert!(!is_common("correct-horse-battery-staple-7"));
    }
}
