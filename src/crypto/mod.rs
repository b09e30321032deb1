//! Encryption at rest: the data keyring that seals stored values (AES-256-GCM) and computes
//! their blind indexes, the data key it is built from, and where that key comes from.

mod data_key;
mod key_file;
mod keyring;

pub use self::{
    data_key::{DataKey, MAKE_DATA_KEY},
    key_file::{DataKeySettings, load_keyring},
    keyring::{KeyId, Keyring, OpenError, Pseudonyms},
};
