//! Email addresses: the one normal form they are compared and shown in, and how they are
//! kept at rest: sealed with the data keyring (AES-256-GCM, bound to the user's row), and
//! found and kept unique through a keyed blind index. No address reaches the database, the
//! audit trail or the log in clear.
//!
//! The index is deterministic: it tells which accounts share an address (what the UNIQUE
//! constraint needs) and nothing else; it answers equality lookups only (docs/security.md).
//! During a data-key rotation a row's index may still be under the previous key, so every
//! check looks under every key of the keyring, and every write that sets an index queues on
//! `Lock::EmailIndex` (on PostgreSQL; SQLite has one writer): a check and the write it
//! decides cannot be split by another instance's.

use std::fmt;

use anyhow::Context;
use icu_normalizer::ComposingNormalizerBorrowed;
use validator::{ValidateEmail, ValidationError};

use crate::{
    crypto::Keyring,
    db::{self, Database, Lock, Timestamp, Transaction},
    domain::text,
};

/// What the blind index of an email is computed for (separates it from any other column's).
const INDEX_PURPOSE: &[u8] = b"users.email";
/// Rows sealed or re-sealed per transaction: short transactions, so requests keep flowing.
const BATCH: i64 = 100;

/// An email address in the one form that is stored, shown and compared, so that two
/// addresses that look alike are one address (as usernames, which are plain ASCII):
/// - hidden characters (`text::is_hidden`: zero-width, soft hyphen, tags…) are refused;
/// - NFKC folds compatibility forms (`ｂｏｓｓ＠ｅｘａｍｐｌｅ．ｃｏｍ`) into the plain ones;
/// - the domain is kept in its IDNA ASCII form, lower-cased, as mail servers use it:
///   `bücher.example` is `xn--bcher-kva.example`, so a Cyrillic `а` in a domain shows as
///   `xn--…` instead of passing for the Latin letter;
/// - the local part is ASCII (the HTML form rules) and keeps its case, because RFC 5321
///   lets a mail server tell `Bob` from `bob`; two accounts still cannot differ only by
///   case: the blind index is computed on the lower-cased form.
///
/// `Debug` shows no address: an `Email` in a log line or an error must not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    const MAX_CHARS: u64 = 254;

    pub fn validate(value: &str) -> Result<(), ValidationError> {
        Self::normalize(value).map(drop)
    }

    pub fn parse(value: String) -> Result<Self, ValidationError> {
        Self::normalize(&value).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn normalize(value: &str) -> Result<String, ValidationError> {
        text::check_length(value, 3, Self::MAX_CHARS)?;
        if value.chars().any(text::is_hidden) {
            return Err(text::hidden_character_error());
        }
        let normal = normal_email(value).ok_or_else(|| ValidationError::new("email"))?;
        // Punycode can make the domain longer than it was typed.
        text::check_length(&normal, 3, Self::MAX_CHARS)?;
        Ok(normal)
    }

    /// An address stored before sealing, in its normal form if it has one; otherwise as it
    /// was (an administrator settles it: the start must not fail on an old row).
    fn from_legacy(stored: String) -> Self {
        Self(normal_email(&stored).unwrap_or(stored))
    }

    /// The same address as `other`, as uniqueness counts it (see `comparison_form`).
    pub fn is_same_address(&self, other: &Email) -> bool {
        self.comparison_form() == other.comparison_form()
    }

    /// What uniqueness compares: the normal form without case (the local part is ASCII).
    fn comparison_form(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The index a row stores, under the keyring's current key.
    pub(crate) fn blind_index(&self, keyring: &Keyring) -> [u8; 32] {
        keyring.blind_index(INDEX_PURPOSE, self.comparison_form().as_bytes())
    }

    /// The index under every key of the keyring: a row not yet re-indexed by a rotation
    /// holds one of the older ones.
    fn blind_indexes(&self, keyring: &Keyring) -> Vec<[u8; 32]> {
        keyring.blind_indexes(INDEX_PURPOSE, self.comparison_form().as_bytes())
    }

    /// The address sealed for user `user_id`'s row: it opens there and nowhere else.
    pub(crate) fn seal(&self, keyring: &Keyring, user_id: i64) -> Vec<u8> {
        keyring.seal(&sealed_purpose(user_id), self.0.as_bytes())
    }

    /// The address sealed in user `user_id`'s row.
    pub(crate) fn open(keyring: &Keyring, user_id: i64, sealed: &[u8]) -> anyhow::Result<Self> {
        let plaintext = keyring
            .open(&sealed_purpose(user_id), sealed)
            .with_context(|| format!("cannot open the email of user {user_id}"))?;
        let address = String::from_utf8(plaintext.to_vec())
            .map_err(|_| anyhow::anyhow!("the email of user {user_id} is not UTF-8"))?;
        Ok(Self(address))
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

fn sealed_purpose(user_id: i64) -> Vec<u8> {
    format!("users.email:{user_id}").into_bytes()
}

/// `value` folded by NFKC with its domain in IDNA ASCII form; `None` unless that is a valid
/// address. Also used on stored rows, which may still hold hidden characters: IDNA drops
/// the ignorable ones from a domain, so the old look-alike meets its original.
fn normal_email(value: &str) -> Option<String> {
    let folded = ComposingNormalizerBorrowed::new_nfkc().normalize(value);
    if !folded.validate_email() {
        return None;
    }
    let (local, domain) = folded.rsplit_once('@')?;
    let domain = if domain.starts_with('[') {
        // An address literal (`[192.0.2.1]`): no IDNA, only hex digits to fold.
        domain.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(domain).ok()?
    };
    Some(format!("{local}@{domain}"))
}

/// The account other than `user_id` (if any) whose email is `email`, under any key of the
/// keyring. `tx` holds `Lock::EmailIndex`.
pub(crate) async fn holder(
    tx: &mut Transaction,
    keyring: &Keyring,
    email: &Email,
    user_id: Option<i64>,
) -> sqlx::Result<Option<i64>> {
    for index in email.blind_indexes(keyring) {
        let holder: Option<i64> = db::fetch_optional_scalar!(
            &mut *tx,
            "SELECT id FROM users WHERE email_index = $1 AND id IS DISTINCT FROM $2",
            &index[..],
            user_id
        )
        .await?;
        if holder.is_some() {
            return Ok(holder);
        }
    }
    Ok(None)
}

/// The address of user `user_id` as stored now; `None` for an account without a sealed one
/// (deleted, or an old row an administrator must settle).
pub(crate) async fn of_account(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
) -> anyhow::Result<Option<Email>> {
    let sealed: Option<Vec<u8>> = db::fetch_optional_scalar!(
        tx,
        "SELECT email_sealed FROM users WHERE id = $1 AND email_sealed IS NOT NULL",
        user_id
    )
    .await?;
    sealed
        .map(|sealed| Email::open(keyring, user_id, &sealed))
        .transpose()
}

/// Makes `email` the address of user `user_id`, sealed and indexed; `tx` holds
/// `Lock::EmailIndex` and has checked that no other account holds it (`holder`).
pub(crate) async fn replace(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    email: &Email,
) -> sqlx::Result<()> {
    store(tx, keyring, user_id, email, true).await
}

/// Stores `email` in user `user_id`'s row, sealed, with its index unless `indexed` is false
/// (a look-alike of another account's address: sealed, but reserving nothing).
async fn store(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    email: &Email,
    indexed: bool,
) -> sqlx::Result<()> {
    let index = indexed.then(|| email.blind_index(keyring));
    db::execute!(
        tx,
        "UPDATE users SET email_sealed = $2, email_index = $3, legacy_email = NULL,
                          updated_at = $4
         WHERE id = $1",
        user_id,
        email.seal(keyring, user_id),
        index.as_ref().map(|index| &index[..]),
        Timestamp::now()
    )
    .await?;
    Ok(())
}

/// A transaction that may set email indexes: it holds `Lock::EmailIndex`.
pub(crate) async fn begin_indexing(db: &Database) -> sqlx::Result<Transaction> {
    let mut tx = db.begin().await?;
    tx.lock(Lock::EmailIndex).await?;
    Ok(tx)
}

/// Seals the addresses stored in clear before emails were sealed (`legacy_email`), in
/// batches, each in its own transaction, and empties the column; run at every start, it
/// finds nothing once they are all sealed. Instances starting together take turns on the
/// lock and each seals what the others left. An address that another account already holds
/// once normalized (an old look-alike) is sealed without an index and logged with both ids
/// for an administrator. Returns how many rows were sealed.
pub async fn seal_legacy_emails(db: &Database, keyring: &Keyring) -> sqlx::Result<u64> {
    let mut sealed = 0;
    loop {
        let mut tx = begin_indexing(db).await?;
        let batch: Vec<(i64, String)> = db::fetch_all!(
            &mut tx,
            "SELECT id, legacy_email FROM users WHERE legacy_email IS NOT NULL
             ORDER BY id LIMIT $1",
            BATCH
        )
        .await?;
        if batch.is_empty() {
            return Ok(sealed);
        }
        for (user_id, stored) in batch {
            let email = Email::from_legacy(stored);
            let holder = holder(&mut tx, keyring, &email, Some(user_id)).await?;
            if let Some(holder) = holder {
                tracing::warn!(
                    user_id,
                    same_address_as = holder,
                    "a stored email looks like another account's address once normalized; \
                     sealed without reserving it, for an administrator to settle"
                );
            }
            store(&mut tx, keyring, user_id, &email, holder.is_none()).await?;
            sealed += 1;
        }
        tx.commit().await?;
    }
}

/// Re-seals and re-indexes under the keyring's current key every email still under a
/// previous key, in batches of short transactions, while the service serves (its lookups
/// look under every key meanwhile). Resumable: an interrupted run leaves every row under one
/// key or the other, and the next run re-seals what is left. Returns how many rows changed.
pub async fn reseal_emails(db: &Database, keyring: &Keyring) -> anyhow::Result<u64> {
    let current = keyring.current_key_id();
    let mut resealed = 0;
    let mut after_id = 0;
    loop {
        let mut tx = begin_indexing(db).await?;
        let batch: Vec<(i64, Vec<u8>, bool)> = db::fetch_all!(
            &mut tx,
            "SELECT id, email_sealed, email_index IS NOT NULL FROM users
             WHERE id > $1 AND email_sealed IS NOT NULL ORDER BY id LIMIT $2",
            after_id,
            BATCH
        )
        .await?;
        let Some(&(last_id, ..)) = batch.last() else {
            return Ok(resealed);
        };
        for (user_id, sealed, indexed) in batch {
            if Keyring::key_id_of(&sealed).ok() == Some(current) {
                continue;
            }
            let email = Email::open(keyring, user_id, &sealed)?;
            store(&mut tx, keyring, user_id, &email, indexed).await?;
            resealed += 1;
        }
        tx.commit().await?;
        after_id = last_id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_kept_in_their_normal_form() {
        for (typed, normal) in [
            ("bob@example.com", "bob@example.com"),
            ("Bob@Example.COM", "Bob@example.com"),
            ("ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ", "bob@example.com"),
            ("bob@bücher.example", "bob@xn--bcher-kva.example"),
            ("bob@[192.0.2.1]", "bob@[192.0.2.1]"),
        ] {
            assert_eq!(
                Email::parse(typed.into()).unwrap().as_str(),
                normal,
                "{typed}"
            );
        }
    }

    #[test]
    fn emails_with_hidden_characters_or_that_are_not_addresses_are_refused() {
        for bad in [
            "bob@exa\u{200B}mple.com",
            "bob@example.com\u{00AD}",
            "b\u{202E}ob@example.com",
            "bob",
            "bob@",
            "bób@example.com",
            "bob@exa mple.com",
        ] {
            assert!(Email::parse(bad.into()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses_that_differ_only_by_case_compare_equal() {
        let upper = Email::parse("Bob@Example.com".into()).unwrap();
        let lower = Email::parse("bob@example.com".into()).unwrap();
        assert_ne!(upper, lower, "the stored form keeps the case");
        assert_eq!(upper.comparison_form(), lower.comparison_form());
    }

    #[test]
    fn an_email_never_prints_its_address() {
        let email = Email::parse("secret.person@example.com".into()).unwrap();
        assert!(!format!("{email:?}").contains("secret"));
    }
}
