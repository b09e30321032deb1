//! Who is calling: passwords, access tokens and the extractor that turns request headers into
//! an authenticated principal.

pub mod account_links;
pub mod account_mail;
pub mod account_tokens;
pub mod api_key;
pub mod common_passwords;
pub mod credentials;
mod eddsa;
pub mod email_change;
pub mod exposure;
pub mod extractor;
pub mod jwt;
pub mod login;
pub mod mfa;
pub mod password;
pub mod principal;
pub mod refresh;
pub mod refresh_families;
pub mod revocation;
pub mod roles;
pub mod sessions;
pub mod sign_ins;
pub mod signing_keys;
mod verified_tokens;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use std::time::{SystemTime, UNIX_EPOCH};

use crate::db::{self, Transaction};

pub use extractor::{Authenticated, MaybeAuthenticated, Session, StepUp};
pub use principal::{Access, AdminRead, AdminWrite, Principal, Read, Write};
pub use roles::Role;

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `unix_now` as the databases store it (BIGINT / INTEGER seconds).
pub fn unix_now_i64() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

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

/// Locks the account's row until `tx` ends: every transaction that changes what belongs to an
/// account (its sessions, its keys, its password) takes this lock first, so on PostgreSQL
/// such transactions queue per account, whichever instance runs them, and each sees what the
/// previous one committed. (`domain::user` reads the row the same way when it needs it;
/// SQLite's write transaction already excludes every other writer.) `NO KEY UPDATE` leaves
/// other transactions free to insert rows that refer to the account. `false`: no such account.
pub(crate) async fn lock_account(tx: &mut Transaction, user_id: i64) -> sqlx::Result<bool> {
    let found: Option<i64> = db::fetch_optional_scalar!(
        tx,
        sqlite: "SELECT id FROM users WHERE id = $1",
        postgres: "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE",
        user_id
    )
    .await?;
    Ok(found.is_some())
}
