//! A data-encryption key: 32 random bytes, written in base64 wherever a person handles it
//! (`DATA_ENCRYPTION_KEY`, the development key file).

use std::{fmt, str::FromStr};

use aes_gcm::aead::{OsRng, rand_core::RngCore};
use base64::{Engine, engine::general_purpose::STANDARD};
use zeroize::Zeroizing;

/// How the error messages and the example files tell people to make a key.
pub const MAKE_DATA_KEY: &str = "make one with `openssl rand -base64 32`";

/// The key bytes are wiped when the last copy is dropped and never printed: `Debug` shows
/// nothing of them.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; DataKey::LEN]>);

impl DataKey {
    pub const LEN: usize = 32;

    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0; Self::LEN]);
        OsRng.fill_bytes(key.as_mut());
        Self(key)
    }

    pub(super) fn bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The base64 form, for the development key file only.
    pub(super) fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_slice()))
    }
}

impl FromStr for DataKey {
    type Err = String;

    /// The reason never repeats the value: it may be a real key with a typo.
    fn from_str(encoded: &str) -> Result<Self, Self::Err> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("is not base64; {MAKE_DATA_KEY}"))?,
        );
        let key: [u8; Self::LEN] = decoded.as_slice().try_into().map_err(|_| {
            format!(
                "must be exactly {} bytes in base64 (this one is {}); {MAKE_DATA_KEY}",
                Self::LEN,
                decoded.len()
            )
        })?;
        Ok(Self(Zeroizing::new(key)))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_parses_from_32_bytes_of_base64_and_nothing_else() {
        let key = DataKey::generate();
        let parsed: DataKey = key.to_base64().parse().unwrap();
        assert_eq!(parsed.bytes(), key.bytes());
        for bad in [
            "not base64!",
            &STANDARD.encode([7; 31]),
            &STANDARD.encode([7; 33]),
        ] {
            let reason = bad.parse::<DataKey>().unwrap_err();
            assert!(reason.contains("openssl rand"), "{reason}");
            assert!(!reason.contains(bad), "the reason echoes the value");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = DataKey::generate();
        assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
    }
}
