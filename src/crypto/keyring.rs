//! The data keyring: seals values for storage with AES-256-GCM and computes blind indexes,
//! under the current data key; opens values sealed under the current or a previous key.
//!
//! A sealed value describes itself: `version (1) ‖ key id (8) ‖ nonce (12) ‖ ciphertext ‖
//! tag (16)`. The nonce is random per value (2⁻³² collision odds only after ~2³² values under
//! one key, far beyond this service's rows). The associated data is the version, the key id
//! and the caller's *purpose* (table, column and row, e.g. `users.email:42`): a value copied
//! to another row or column, or relabelled with another key id, fails to open.
//!
//! Each data key is only input keying material: HKDF-SHA256 derives from it, under distinct
//! labels, the AES key, the blind-index key and the public key id. The id identifies a key
//! without revealing anything of it, and no subkey can be computed from another.

use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::DataKey;

const FORMAT_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// The HKDF salt: binds every derivation to this use of the key.
const HKDF_SALT: &[u8] = b"filmvault data key v1";
const ENCRYPTION_LABEL: &[u8] = b"aes-256-gcm";
const BLIND_INDEX_LABEL: &[u8] = b"blind-index hmac-sha256";
const KEY_ID_LABEL: &[u8] = b"key id";
const PSEUDONYM_LABEL: &[u8] = b"pseudonym hmac-sha256";

/// Names a data key in sealed values and logs; derived from the key, reveals nothing of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a sealed value did not open. No variant carries any of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed value of a format this version knows")]
    Malformed,
    #[error("sealed under data key {0}, which is not in the keyring")]
    UnknownKey(KeyId),
    /// Tampered with, or moved from the row or column it was sealed for.
    #[error("the sealed value does not authenticate for this purpose")]
    Forged,
}

/// One data key's derived keys. `Aes256Gcm` wipes its key schedule on drop (aes-gcm's
/// `zeroize` feature); the HMAC keys are wiped by `Zeroizing`.
struct DerivedKeys {
    id: KeyId,
    cipher: Aes256Gcm,
    blind_index: Zeroizing<[u8; 32]>,
    /// For names kept outside the database (`Pseudonyms`): a key of their own, so a copy of
    /// Redis's memory holds nothing that indexes the database's columns.
    pseudonym: Zeroizing<[u8; 32]>,
}

impl DerivedKeys {
    fn derive(key: &DataKey) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), key.bytes());
        let expand = |label: &[u8], out: &mut [u8]| {
            hkdf.expand(label, out)
                .expect("HKDF-SHA256 expands to up to 8160 bytes");
        };
        let mut encryption = Zeroizing::new([0; 32]);
        expand(ENCRYPTION_LABEL, encryption.as_mut());
        let mut blind_index = Zeroizing::new([0; 32]);
        expand(BLIND_INDEX_LABEL, blind_index.as_mut());
        let mut pseudonym = Zeroizing::new([0; 32]);
        expand(PSEUDONYM_LABEL, pseudonym.as_mut());
        let mut id = [0; KEY_ID_LEN];
        expand(KEY_ID_LABEL, &mut id);
        Self {
            id: KeyId(id),
            cipher: Aes256Gcm::new(&(*encryption).into()),
            blind_index,
            pseudonym,
        }
    }

    fn blind_index(&self, purpose: &[u8], normalized: &[u8]) -> [u8; 32] {
        keyed_digest(&self.blind_index, purpose, normalized)
    }
}

fn keyed_digest(key: &[u8; 32], purpose: &[u8], normalized: &[u8]) -> [u8; 32] {
    let mut mac = keyed_for(key, purpose);
    mac.update(normalized);
    mac.finalize().into_bytes().into()
}

/// The MAC under `key` that has taken in `purpose`: what is left to give it is the value.
fn keyed_for(key: &[u8; 32], purpose: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    // The purpose's length first: ("ab", "c") and ("a", "bc") must not collide.
    mac.update(
        &u64::try_from(purpose.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    mac.update(purpose);
    mac
}

/// Keyed digests of one purpose under the current data key's pseudonym key, as a handle that
/// opens, seals and indexes nothing: for names that leave the database (Redis keys), which then
/// reveal no more than a blind index does, where a plain hash of a username is reversed with a
/// list of usernames.
#[derive(Clone)]
pub struct Pseudonyms {
    /// Keyed and given the purpose once: the client's pseudonym is computed on every request
    /// in cluster mode (its rate-limit bucket), and each then costs only its own bytes.
    prepared: Hmac<Sha256>,
    purpose: &'static [u8],
}

impl Pseudonyms {
    /// Lowercase hex, 64 characters, whatever the length of `value`.
    pub fn of(&self, value: &str) -> String {
        let mut mac = self.prepared.clone();
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonyms")
            .field("purpose", &String::from_utf8_lossy(self.purpose))
            .finish_non_exhaustive()
    }
}

/// The current data key, which seals, and the previous ones, which still open (until
/// `rotate-data-key` has re-sealed everything under the current one).
pub struct Keyring {
    current: DerivedKeys,
    previous: Vec<DerivedKeys>,
}

impl Keyring {
    /// A previous key equal to the current one, or listed twice, is kept once.
    pub fn new(current: &DataKey, previous: &[DataKey]) -> Self {
        let current = DerivedKeys::derive(current);
        let mut kept: Vec<DerivedKeys> = Vec::with_capacity(previous.len());
        for key in previous.iter().map(DerivedKeys::derive) {
            if key.id != current.id && kept.iter().all(|k| k.id != key.id) {
                kept.push(key);
            }
        }
        Self {
            current,
            previous: kept,
        }
    }

    pub fn current_key_id(&self) -> KeyId {
        self.current.id
    }

    /// Every key the keyring opens with, the current one first.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys().map(|key| key.id)
    }

    /// The key a sealed value names, read without opening it (to find values still under
    /// a previous key).
    pub fn key_id_of(sealed: &[u8]) -> Result<KeyId, OpenError> {
        match sealed {
            [FORMAT_VERSION, rest @ ..] if sealed.len() >= OVERHEAD => Ok(KeyId(
                rest[..KEY_ID_LEN]
                    .try_into()
                    .expect("the slice is KEY_ID_LEN long"),
            )),
            _ => Err(OpenError::Malformed),
        }
    }

    /// `plaintext` sealed under the current key for `purpose`.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let header = header(self.current.id);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &associated_data(&header, purpose),
                },
            )
            .expect("AES-GCM seals any value shorter than 64 GiB");
        let mut sealed = Vec::with_capacity(plaintext.len() + OVERHEAD);
        sealed.extend_from_slice(&header);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// The plaintext of a value sealed for `purpose` under any key of the keyring.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let id = Self::key_id_of(sealed)?;
        let key = self
            .keys()
            .find(|key| key.id == id)
            .ok_or(OpenError::UnknownKey(id))?;
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &associated_data(header, purpose),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Forged)
    }

    /// A keyed, deterministic digest of `normalized` for lookups and uniqueness, under the
    /// current key: equal inputs give equal indexes; without the key nothing can be learnt
    /// or guessed from one. `purpose` separates the indexes of different columns.
    pub fn blind_index(&self, purpose: &[u8], normalized: &[u8]) -> [u8; 32] {
        self.current.blind_index(purpose, normalized)
    }

    /// Pseudonyms for values kept outside the database. They change when the data key does
    /// (nothing is re-indexed there): what they name is forgotten, and while a rotation rolls
    /// through the instances, those on the old key and those on the new one count apart.
    pub fn pseudonyms(&self, purpose: &'static [u8]) -> Pseudonyms {
        Pseudonyms {
            prepared: keyed_for(&self.current.pseudonym, purpose),
            purpose,
        }
    }

    /// The index under every key, the current one first: a lookup during a rotation matches
    /// rows not yet re-indexed under the current key.
    pub fn blind_indexes(&self, purpose: &[u8], normalized: &[u8]) -> Vec<[u8; 32]> {
        self.keys()
            .map(|key| key.blind_index(purpose, normalized))
            .collect()
    }

    fn keys(&self) -> impl Iterator<Item = &DerivedKeys> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn header(id: KeyId) -> [u8; HEADER_LEN] {
    let mut header = [FORMAT_VERSION; HEADER_LEN];
    header[1..].copy_from_slice(&id.0);
    header
}

fn associated_data(header: &[u8], purpose: &[u8]) -> Vec<u8> {
    [header, purpose].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &[u8] = b"users.email:42";

    fn keyring() -> (Keyring, DataKey) {
        let key = DataKey::generate();
        (Keyring::new(&key, &[]), key)
    }

    #[test]
    fn a_sealed_value_opens_for_its_purpose_and_hides_its_plaintext() {
        let (keyring, _) = keyring();
        let sealed = keyring.seal(EMAIL, b"ada@example.com");
        assert_eq!(
            keyring.open(EMAIL, &sealed).unwrap().as_slice(),
            b"ada@example.com"
        );
        assert!(!sealed.windows(3).any(|w| w == b"ada"));
        assert_eq!(Keyring::key_id_of(&sealed), Ok(keyring.current_key_id()));
    }

    /// Redis key names must not change between versions: a rolling upgrade would split every
    /// bucket in two. The expected value is HKDF-SHA256 then HMAC-SHA256, computed apart
    /// (Python's `hmac`) from the key 00 01 .. 1f.
    #[test]
    fn a_pseudonym_is_the_documented_keyed_digest_of_purpose_and_value() {
        let key: DataKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
            .parse()
            .unwrap();
        let clients = Keyring::new(&key, &[]).pseudonyms(b"redis key names: client");
        assert_eq!(
            clients.of("203.0.113.7"),
            "cedc4c2fa7304600530829f2f741ad781a152e51c23ef403fa697a6fbf404912"
        );
        assert_eq!(clients.of("203.0.113.7"), clients.clone().of("203.0.113.7"));
        assert_ne!(clients.of("203.0.113.7"), clients.of("203.0.113.8"));
    }

    #[test]
    fn sealing_twice_gives_two_different_values() {
        let (keyring, _) = keyring();
        assert_ne!(keyring.seal(EMAIL, b"same"), keyring.seal(EMAIL, b"same"));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let (keyring, _) = keyring();
        let sealed = keyring.seal(EMAIL, b"ada@example.com");
        for byte in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[byte] ^= 0x01;
            assert!(keyring.open(EMAIL, &tampered).is_err(), "byte {byte}");
        }
        for length in 0..sealed.len() {
            assert!(keyring.open(EMAIL, &sealed[..length]).is_err(), "{length}");
        }
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_open() {
        let (keyring, _) = keyring();
        let sealed = keyring.seal(EMAIL, b"ada@example.com");
        for purpose in [
            &b"users.email:43"[..],
            b"users.totp:42",
            b"users.email:4",
            b"",
        ] {
            assert_eq!(keyring.open(purpose, &sealed), Err(OpenError::Forged));
        }
    }

    #[test]
    fn another_key_cannot_open_and_says_which_key_was_used() {
        let (keyring, _) = keyring();
        let sealed = keyring.seal(EMAIL, b"ada@example.com");
        let (stranger, _) = self::keyring();
        assert_eq!(
            stranger.open(EMAIL, &sealed),
            Err(OpenError::UnknownKey(keyring.current_key_id()))
        );
        // Relabelled with the stranger's id, it still does not authenticate.
        let mut relabelled = sealed.clone();
        relabelled[1..HEADER_LEN].copy_from_slice(stranger.current_key_id().as_bytes());
        assert_eq!(stranger.open(EMAIL, &relabelled), Err(OpenError::Forged));
    }

    #[test]
    fn after_rotation_old_values_open_and_new_ones_use_the_new_key() {
        let (old, old_key) = keyring();
        let sealed_before = old.seal(EMAIL, b"ada@example.com");
        let rotated = Keyring::new(&DataKey::generate(), &[old_key.clone(), old_key]);
        assert_eq!(
            rotated.key_ids().count(),
            2,
            "a repeated previous key is kept once"
        );
        assert_eq!(
            rotated.open(EMAIL, &sealed_before).unwrap().as_slice(),
            b"ada@example.com"
        );
        let sealed_after = rotated.seal(EMAIL, b"ada@example.com");
        assert_eq!(
            Keyring::key_id_of(&sealed_after),
            Ok(rotated.current_key_id())
        );
        assert_ne!(rotated.current_key_id(), old.current_key_id());
    }

    #[test]
    fn blind_indexes_are_keyed_deterministic_and_separated_by_purpose() {
        let (keyring, old_key) = keyring();
        let index = keyring.blind_index(b"users.email", b"ada@example.com");
        assert_eq!(
            index,
            keyring.blind_index(b"users.email", b"ada@example.com")
        );
        assert_ne!(
            index,
            keyring.blind_index(b"users.email", b"bob@example.com")
        );
        assert_ne!(
            index,
            keyring.blind_index(b"users.emai", b"lada@example.com")
        );
        let rotated = Keyring::new(&DataKey::generate(), &[old_key]);
        let during_rotation = rotated.blind_indexes(b"users.email", b"ada@example.com");
        assert_eq!(during_rotation.len(), 2);
        assert_ne!(during_rotation[0], index);
        assert_eq!(during_rotation[1], index);
    }

    #[test]
    fn the_key_id_is_stable_and_debug_shows_only_ids() {
        let key = DataKey::generate();
        assert_eq!(
            Keyring::new(&key, &[]).current_key_id(),
            Keyring::new(&key, &[]).current_key_id()
        );
        let keyring = Keyring::new(&key, &[]);
        let printed = format!("{keyring:?}");
        assert!(printed.contains(&keyring.current_key_id().to_string()));
        assert!(!printed.contains(key.to_base64().as_str()));
    }
}
