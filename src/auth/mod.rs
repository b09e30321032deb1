//! Who is calling: passwords, access tokens and the extractor that turns request headers into
//! an authenticated principal.

pub mod common_passwords;
pub mod credentials;
pub mod extractor;
pub mod jwt;
pub mod password;
pub mod roles;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

pub use extractor::{
    Access, AdminRead, AdminWrite, Authenticated, MaybeAuthenticated, Read, Write,
};
pub use roles::Role;

/// `bytes` bytes from the operating system's CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}
