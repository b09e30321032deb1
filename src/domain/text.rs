//! Rules shared by every free-text field that people will read: film names, studios, search
//! terms, API key names, and the hidden-character rule of emails.
//!
//! Control characters break logs and terminals; bidirectional overrides and invisible
//! characters make one string look like another ("Trojan Source"). Neither belongs in a
//! film title, so both are refused rather than silently stripped.

use std::borrow::Cow;

use icu_properties::{
    CodePointMapData, CodePointSetData,
    props::{DefaultIgnorableCodePoint, GeneralCategory},
};
use serde::{Deserialize, Deserializer};
use validator::{ValidateLength, ValidationError};

/// A character that is not visible text of its own, by its Unicode properties rather than a
/// hand-made list (which always misses some):
/// - general category Other: controls (Cc), format characters (Cf: bidi controls, zero-width
///   characters, the soft hyphen, tag characters…), private use (Co), unassigned (Cn);
/// - line and paragraph separators (Zl, Zp), which break a one-line text;
/// - any other default-ignorable code point (the Hangul fillers render as blank), except
///   non-spacing marks: variation selectors and Mongolian free variation selectors belong to
///   the character before them (emoji presentation, CJK and Mongolian glyph variants).
///
/// So ZWJ and ZWNJ (Cf) are refused too, though Persian and Indic writing and emoji
/// sequences use them: see docs/security.md.
pub fn is_hidden(c: char) -> bool {
    match CodePointMapData::<GeneralCategory>::new().get(c) {
        GeneralCategory::Control
        | GeneralCategory::Format
        | GeneralCategory::PrivateUse
        | GeneralCategory::Unassigned
        | GeneralCategory::Surrogate
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => true,
        GeneralCategory::NonspacingMark => false,
        _ => CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c),
    }
}

/// The error for a value holding a character that `is_hidden`.
pub fn hidden_character_error() -> ValidationError {
    ValidationError::new("characters").with_message(Cow::Borrowed(
        "must not contain control, format (invisible), private-use or unassigned characters",
    ))
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

/// A one-line text of `min..=max` characters without hidden characters (`is_hidden`).
pub fn check_display_text(value: &str, min: u64, max: u64) -> Result<(), ValidationError> {
    check_length(value, min, max)?;
    if value.chars().any(is_hidden) {
        return Err(hidden_character_error());
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
            "Up\u{85}",
            "Up\u{202E}pU",
            "U\u{200B}p",
            "U\u{200D}p",
            "U\u{2066}p",
            "U\u{FEFF}p",
            "U\u{115F}p",
            "U\u{FFA0}p",
            "U\u{E0001}p",
            "U\u{FFFF}p",
            "U\u{10FFFD}p",
            "U\u{2029}p",
        ] {
            assert!(check_display_text(title, 1, 200).is_err(), "{title:?}");
        }
    }

    #[test]
    fn marks_that_belong_to_the_previous_character_are_not_hidden() {
        for c in ['\u{0301}', '\u{FE0F}', '\u{E0100}', '\u{180B}', '\u{0E34}'] {
            assert!(!is_hidden(c), "U+{:04X}", u32::from(c));
        }
        for c in [' ', '\u{3000}', 'a', '千', '❤'] {
            assert!(!is_hidden(c), "U+{:04X}", u32::from(c));
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
