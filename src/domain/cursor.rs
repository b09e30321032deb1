//! Keyset cursors for the film list: where the previous page ended, opaque to the client.
//!
//! A cursor is `base64url(version ‖ last id ‖ tag)` with no padding, 34 characters. The tag is
//! an HMAC-SHA256 (the keyring's keyed digest, under its own purpose) over the version, the id
//! and the search the page answered, cut to 128 bits. So a cursor cannot be forged or edited
//! into another position, and one issued for one search is refused for another: the walk it
//! continues is always the one that issued it. Anything else (truncated, padded, re-encoded,
//! garbage) is refused before a query runs. Cursors issued under a previous data key stay
//! valid until that key leaves the keyring.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use subtle::ConstantTimeEq;

use crate::{
    crypto::Keyring,
    error::{ApiError, FieldError},
};

const VERSION: u8 = 1;
const PURPOSE: &[u8] = b"films.list-cursor";
const ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const DECODED_LEN: usize = 1 + ID_LEN + TAG_LEN;
/// Base64 of `DECODED_LEN` bytes without padding.
pub const ENCODED_LEN: usize = (DECODED_LEN * 4).div_ceil(3);

/// The position after the film with id `after_id`, in the list's one order (id ascending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub after_id: i64,
}

impl ListCursor {
    /// The cursor a client sends back for the next page of the list filtered by `search`.
    pub fn encode(self, keyring: &Keyring, search: Option<&str>) -> String {
        let position = position(self.after_id);
        let tag = keyring.blind_index(PURPOSE, &signed_bytes(&position, search));
        let mut bytes = Vec::with_capacity(DECODED_LEN);
        bytes.extend_from_slice(&position);
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position `raw` names, if this service issued it for the same `search`.
    pub fn decode(keyring: &Keyring, raw: &str, search: Option<&str>) -> Result<Self, ApiError> {
        if raw.len() != ENCODED_LEN {
            return Err(invalid());
        }
        // The engine refuses padding and non-canonical trailing bits: one spelling per cursor.
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let (position, tag) = bytes.split_at(1 + ID_LEN);
        if position[0] != VERSION {
            return Err(invalid());
        }
        let signed = signed_bytes(position, search);
        let genuine = keyring
            .blind_indexes(PURPOSE, &signed)
            .iter()
            .any(|expected| bool::from(expected[..TAG_LEN].ct_eq(tag)));
        if !genuine {
            return Err(invalid());
        }
        let after_id = i64::from_be_bytes(position[1..].try_into().expect("ID_LEN bytes"));
        Ok(Self { after_id })
    }
}

fn position(after_id: i64) -> [u8; 1 + ID_LEN] {
    let mut position = [VERSION; 1 + ID_LEN];
    position[1..].copy_from_slice(&after_id.to_be_bytes());
    position
}

/// The position, then the search: the position has a fixed length, so no two (position,
/// search) pairs give the same bytes. No search and an empty one are the same list.
fn signed_bytes(position: &[u8], search: Option<&str>) -> Vec<u8> {
    [position, search.unwrap_or_default().as_bytes()].concat()
}

fn invalid() -> ApiError {
    ApiError::BadRequest {
        detail: "The cursor is not one this list issued for this search; \
                 start again without `cursor`."
            .into(),
        errors: vec![FieldError::new(
            "cursor",
            "must be a `next_cursor` returned by this list, unchanged, with the same `q`",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;

    fn keyring() -> Keyring {
        Keyring::new(&DataKey::generate(), &[])
    }

    #[test]
    fn a_cursor_round_trips_for_its_own_search_only() {
        let keyring = keyring();
        let cursor = ListCursor { after_id: 42 }.encode(&keyring, Some("ghibli"));
        assert_eq!(cursor.len(), ENCODED_LEN);
        assert_eq!(
            ListCursor::decode(&keyring, &cursor, Some("ghibli")).unwrap(),
            ListCursor { after_id: 42 }
        );
        assert!(ListCursor::decode(&keyring, &cursor, None).is_err());
        assert!(ListCursor::decode(&keyring, &cursor, Some("ghibl")).is_err());
    }

    #[test]
    fn a_cursor_from_another_key_or_edited_in_any_character_is_refused() {
        let keyring = keyring();
        let cursor = ListCursor { after_id: 7 }.encode(&keyring, None);
        assert!(ListCursor::decode(&self::keyring(), &cursor, None).is_err());
        for index in 0..cursor.len() {
            let mut edited = cursor.clone().into_bytes();
            edited[index] = if edited[index] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(edited).unwrap();
            assert!(
                ListCursor::decode(&keyring, &edited, None).is_err(),
                "{index}"
            );
        }
        for bad in [
            &cursor[..ENCODED_LEN - 1],
            "",
            "!!!!",
            &format!("{cursor}="),
        ] {
            assert!(ListCursor::decode(&keyring, bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursors_under_a_previous_key_still_open() {
        let (old, new) = (DataKey::generate(), DataKey::generate());
        let cursor = ListCursor { after_id: 9 }.encode(&Keyring::new(&old, &[]), None);
        let rotated = Keyring::new(&new, std::slice::from_ref(&old));
        assert!(ListCursor::decode(&rotated, &cursor, None).is_ok());
    }
}
