//! Who is calling: passwords, access tokens and the extractor that turns request headers into
//! an authenticated principal.

pub mod api_key;
pub mod common_passwords;
pub mod credentials;
pub mod extractor;
pub mod jwt;
pub mod login;
pub mod password;
pub mod principal;
pub mod refresh;
pub mod revocation;
pub mod roles;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

pub use extractor::{Authenticated, MaybeAuthenticated, Session};
pub use principal::{Access, AdminRead, AdminWrite, Principal, Read, Write};
pub use roles::Role;

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buffer = [0u8; N];
    OsRng.fill_bytes(&mut buffer);
    buffer
}

/// `bytes` bytes from the operating system's CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}
