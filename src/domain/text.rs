//! Rules shared by every free-text field that people will read: film names, studios, search
//! terms.
//!
//! Control characters break logs and terminals; bidirectional overrides and invisible
//! characters make one string look like another ("Trojan Source"). Neither belongs in a
//! film title, so both are refused rather than silently stripped.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use validator::{ValidateLength, ValidationError};

fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}'              // BOM / zero-width no-break space
        )
}

/// `min..=max` characters (not bytes), reported with its bounds for the error message.
pub fn check_length(value: &str, min: u64, max: u64) -> Result<(), ValidationError> {
    if value.validate_length(Some(min), Some(max), None) {
        return Ok(());
    }
    let mut error = ValidationError::new("length");
    error.add_param(Cow::Borrowed("min"), &min);
    error.add_param(Cow::Borrowed("max"), &max);
    Err(error)
}

/// A one-line text of `min..=max` characters without control or deceptive characters.
pub fn check_display_text(value: &str, min: u64, max: u64) -> Result<(), ValidationError> {
    check_length(value, min, max)?;
    if value.chars().any(is_deceptive) {
        return Err(
            ValidationError::new("characters").with_message(Cow::Borrowed(
                "must not contain control, invisible or bidirectional-override characters",
            )),
        );
    }
    Ok(())
}

/// Deserializes a string with surrounding whitespace removed, so " Up " and "Up" are one film.
pub fn trimmed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    Ok(match value.trim() {
        trimmed if trimmed.len() == value.len() => value,
        trimmed => trimmed.to_owned(),
    })
}

/// Like `trimmed`, for fields that may be left out (with `#[serde(default)]`) but, when
/// present, must be a string: an explicit `null` is refused rather than read as "absent".
pub fn trimmed_if_present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    trimmed(deserializer).map(Some)
}

/// Escapes `%`, `_` and `\` so a search term matches literally inside `LIKE ... ESCAPE '\'`.
pub fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_titles_in_any_script_are_accepted() {
        for title in [
            "Frozen",
            "Spirited Away",
            "千と千尋の神隠し",
            "Amélie",
            "WALL·E",
        ] {
            assert!(check_display_text(title, 1, 200).is_ok(), "{title}");
        }
    }

    #[test]
    fn control_and_deceptive_characters_are_refused() {
        for title in [
            "Up\n",
            "Up\u{0}",
            "Up\u{1b}[31m",
            "Up\u{202E}pU",
            "U\u{200B}p",
        ] {
            assert!(check_display_text(title, 1, 200).is_err(), "{title:?}");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(check_display_text(&"é".repeat(200), 1, 200).is_ok());
        assert!(check_display_text(&"é".repeat(201), 1, 200).is_err());
        assert!(check_display_text("", 1, 200).is_err());
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("100%_\\"), "%100\\%\\_\\\\%");
    }
}
