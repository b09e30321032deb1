//! Recovery codes: ten single-use codes shown once, when TOTP is confirmed, for the day the
//! authenticator is lost. Each carries 80 random bits, so a SHA-256 is all the storage needs
//! (nobody can search 2⁸⁰ codes from a leaked table); a used code is deleted.

use sha2::{Digest, Sha256};

use crate::{
    auth::random_bytes,
    db::{self, Transaction},
};

/// How many codes a confirmation issues.
pub const COUNT: usize = 10;
/// 32 letters and digits without the look-alikes 0/o and 1/l: five bits each.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
const CODE_CHARS: usize = 16;
const GROUP: usize = 4;

/// A fresh code, `xxxx-xxxx-xxxx-xxxx`: 16 characters of 5 bits, 80 bits in all.
fn generate() -> String {
    let mut bits = u128::from_be_bytes({
        let mut wide = [0u8; 16];
        wide[6..].copy_from_slice(&random_bytes::<10>());
        wide
    });
    let mut code = String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP);
    for i in 0..CODE_CHARS {
        if i > 0 && i % GROUP == 0 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[(bits & 31) as usize]));
        bits >>= 5;
    }
    code
}

/// The code as typed, without its hyphens and spaces and in lower case; `None` unless it can
/// be a recovery code at all.
fn normalize(typed: &str) -> Option<String> {
    let normal: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let plausible = normal.len() == CODE_CHARS && normal.bytes().all(|b| ALPHABET.contains(&b));
    plausible.then_some(normal)
}

fn code_hash(normal: &str) -> Vec<u8> {
    Sha256::digest(normal.as_bytes()).to_vec()
}

/// Replaces the account's codes with `COUNT` new ones; returns them, the only time they exist
/// in clear.
pub async fn replace(tx: &mut Transaction, user_id: i64) -> sqlx::Result<Vec<String>> {
    db::execute!(
        &mut *tx,
        "DELETE FROM recovery_codes WHERE user_id = $1",
        user_id
    )
    .await?;
    let mut codes = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        let code = generate();
        let normal = normalize(&code).expect("a generated code is a recovery code");
        db::execute!(
            &mut *tx,
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
            user_id,
            code_hash(&normal)
        )
        .await?;
        codes.push(code);
    }
    Ok(codes)
}

/// Spends `typed` if it is one of the account's unused codes; returns how many are left.
pub async fn spend(tx: &mut Transaction, user_id: i64, typed: &str) -> sqlx::Result<Option<i64>> {
    let Some(normal) = normalize(typed) else {
        return Ok(None);
    };
    let spent = db::execute!(
        &mut *tx,
        "DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2",
        user_id,
        code_hash(&normal)
    )
    .await?;
    if spent == 0 {
        return Ok(None);
    }
    let left: i64 = db::fetch_scalar!(
        tx,
        "SELECT count(*) FROM recovery_codes WHERE user_id = $1",
        user_id
    )
    .await?;
    Ok(Some(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_read_back_whatever_the_case_and_hyphens() {
        let code = generate();
        assert_eq!(code.len(), 19);
        let normal = normalize(&code).unwrap();
        assert_eq!(
            normalize(&code.to_uppercase().replace('-', " ")),
            Some(normal)
        );
        assert_ne!(generate(), code);
    }

    #[test]
    fn anything_else_is_not_a_recovery_code() {
        for typed in [
            "",
            "123456",
            "abcd-efgh-ijkm-npq",
            "abcd-efgh-ijkm-npq0",
            "ABCD-EFGH-IJKL-MNPQ",
        ] {
            assert_eq!(normalize(typed), None, "{typed}");
        }
    }
}
