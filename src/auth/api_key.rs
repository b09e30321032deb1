//! API keys: `fk_<12 hex lookup>_<43 base64url secret>` (256 bits of secret), shown once at
//! creation and stored as a SHA-256 with the lookup part in the clear.
//!
//! The lookup part finds the row; the hash comparison (constant-time) decides. A revoked,
//! unknown or mistyped key, or one of a disabled account, is a 401 with the same body.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::prelude::FromRow;
use subtle::ConstantTimeEq;

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{Role, lock_account, principal::Scopes, random_bytes, random_token},
    crypto::Keyring,
    db::{self, Database, Executor, Timestamp, Transaction},
    error::{ApiError, Step},
    mail::{self, Notice},
    vocabulary::vocabulary,
};

pub const KEY_PREFIX: &str = "fk_";
const LOOKUP_CHARS: usize = 12;
const SECRET_CHARS: usize = 43;
const KEY_CHARS: usize = KEY_PREFIX.len() + LOOKUP_CHARS + 1 + SECRET_CHARS;
pub const MAX_KEYS_PER_USER: i64 = 20;
/// `last_used_at` is refreshed at most this often, so a busy key does not turn every read into
/// a write.
const TOUCH_INTERVAL: time::Duration = time::Duration::seconds(60);

vocabulary! {
    /// What a key may do; stored as one flag column per scope (`can_read`, `can_write`).
    pub enum Scope {
        Read = "read",
        Write = "write",
    }
}

/// A key whose shape is right; whether it is genuine is for `authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WellFormedKey<'a> {
    lookup: &'a str,
    full: &'a str,
}

pub fn parse(key: &str) -> Option<WellFormedKey<'_>> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    if key.len() != KEY_CHARS {
        return None;
    }
    let (lookup, rest) = rest.split_at(LOOKUP_CHARS);
    let secret = rest.strip_prefix('_')?;
    let lookup_ok = lookup
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (lookup_ok && secret_ok).then_some(WellFormedKey { lookup, full: key })
}

fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn generate() -> (String, String) {
    let lookup = hex::encode(random_bytes::<{ LOOKUP_CHARS / 2 }>());
    let key = format!("{KEY_PREFIX}{lookup}_{}", random_token(32));
    (key, lookup)
}

/// What an owner sees of a key: never the secret, never its hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub id: i64,
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// The public start of the key (`fk_<12 hex>`), to recognise it.
    #[schema(pattern = "^fk_[0-9a-f]{12}$", max_length = 15)]
    pub prefix: String,
    #[schema(min_items = 1, max_items = 2)]
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

#[derive(FromRow)]
struct ApiKeyRow {
    id: i64,
    name: String,
    prefix: String,
    can_read: bool,
    can_write: bool,
    created_at: Timestamp,
    last_used_at: Option<Timestamp>,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(row: ApiKeyRow) -> Self {
        let scopes = [(row.can_read, Scope::Read), (row.can_write, Scope::Write)]
            .into_iter()
            .filter_map(|(granted, scope)| granted.then_some(scope))
            .collect();
        Self {
            id: row.id,
            name: row.name,
            prefix: format!("{KEY_PREFIX}{}", row.prefix),
            scopes,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        }
    }
}

/// Creates a key and returns it with the plaintext, which is never stored. The count of live
/// keys and the insert run under the account's lock (`auth::lock_account`): requests on
/// several instances at once cannot all see room for one more.
pub async fn create(
    db: &Database,
    keyring: &Keyring,
    user_id: i64,
    name: &str,
    scopes: Scopes,
    audit: &AuditContext,
) -> Result<(ApiKeyView, String), ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    lock_account(&mut tx, user_id)
        .await
        .step("lock the account")?;
    ensure_room_for_one_more(&mut tx, user_id).await?;
    let (view, key) = insert_with_free_lookup(&mut tx, user_id, name, scopes).await?;
    let scope_names: Vec<&str> = view.scopes.iter().map(|scope| scope.as_str()).collect();
    let notice = Notice::ApiKeyCreated {
        name,
        scopes: &scope_names,
    };
    mail::notify(&mut tx, keyring, user_id, notice)
        .await
        .step("write the API-key notice")?;
    let event = audit
        .event(AuditAction::ApiKeyCreate, Outcome::Success)
        .target(AuditTarget::ApiKey(view.id))
        .reason(format!("scopes={}", scope_names.join(",")));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")?;
    Ok((view, key))
}

/// Refuses a key beyond `MAX_KEYS_PER_USER` live ones; `tx` holds the account's lock.
async fn ensure_room_for_one_more(tx: &mut Transaction, user_id: i64) -> Result<(), ApiError> {
    let active: i64 = db::fetch_scalar!(
        tx,
        "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL",
        user_id
    )
    .await
    .step("count the live keys")?;
    if active >= MAX_KEYS_PER_USER {
        return Err(ApiError::Conflict(
            "You have the maximum number of active API keys; revoke one first.",
        ));
    }
    Ok(())
}

/// Inserts a new key. 48 random bits of lookup: a collision is rare, and the UNIQUE index
/// finds it (without an error, which would end a PostgreSQL transaction); three taken in a
/// row point to a broken random source more likely than to bad luck.
async fn insert_with_free_lookup(
    tx: &mut Transaction,
    user_id: i64,
    name: &str,
    scopes: Scopes,
) -> Result<(ApiKeyView, String), ApiError> {
    for _ in 0..3 {
        let (key, lookup) = generate();
        let inserted: Option<ApiKeyRow> = db::fetch_optional!(
            &mut *tx,
            "INSERT INTO api_keys (user_id, name, prefix, key_hash, can_read, can_write)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (prefix) DO NOTHING
             RETURNING id, name, prefix, can_read, can_write, created_at, last_used_at",
            user_id,
            name,
            &lookup,
            key_hash(&key),
            scopes.read,
            scopes.write
        )
        .await
        .step("insert the key")?;
        if let Some(row) = inserted {
            return Ok((ApiKeyView::from(row), key));
        }
    }
    Err(anyhow::anyhow!("every API key lookup part drawn was already taken").into())
}

pub async fn list(db: &mut impl Executor, user_id: i64) -> sqlx::Result<Vec<ApiKeyView>> {
    let rows: Vec<ApiKeyRow> = db::fetch_all!(
        db,
        "SELECT id, name, prefix, can_read, can_write, created_at, last_used_at
         FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
        user_id
    )
    .await?;
    Ok(rows.into_iter().map(ApiKeyView::from).collect())
}

/// Revokes one of the user's own keys; `false` if they have no such live key (another user's
/// key is indistinguishable from a missing one). A single conditional update: of two
/// revocations at once, one changes the row and the other finds it revoked.
pub async fn revoke(
    db: &Database,
    user_id: i64,
    key_id: i64,
    audit: &AuditContext,
) -> Result<bool, ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    let revoked = db::execute!(
        &mut tx,
        "UPDATE api_keys SET revoked_at = $3
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        key_id,
        user_id,
        Timestamp::now()
    )
    .await
    .step("revoke the key")?;
    if revoked != 1 {
        return Ok(false);
    }
    let event = audit
        .event(AuditAction::ApiKeyRevoke, Outcome::Success)
        .target(AuditTarget::ApiKey(key_id));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")?;
    Ok(true)
}

/// A genuine key of an enabled account.
pub struct AuthenticatedKey {
    pub key_id: i64,
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub scopes: Scopes,
    /// `last_used_at` is older than the touch interval and should be refreshed.
    pub stale: bool,
}

#[derive(FromRow)]
struct StoredKey {
    id: i64,
    user_id: i64,
    username: String,
    key_hash: Vec<u8>,
    can_read: bool,
    can_write: bool,
    stale: bool,
    role: Role,
    disabled: bool,
}

pub async fn authenticate(
    db: &mut impl Executor,
    key: WellFormedKey<'_>,
) -> sqlx::Result<Option<AuthenticatedKey>> {
    let stored: Option<StoredKey> = db::fetch_optional!(
        db,
        "SELECT k.id, k.user_id, u.username, k.key_hash, k.can_read, k.can_write,
                (k.last_used_at IS NULL OR k.last_used_at < $2) AS stale,
                u.role, u.disabled
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.prefix = $1 AND k.revoked_at IS NULL",
        key.lookup,
        Timestamp::now().saturating_sub(TOUCH_INTERVAL)
    )
    .await?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    let genuine: bool = key_hash(key.full).ct_eq(&stored.key_hash).into();
    if !genuine || stored.disabled {
        return Ok(None);
    }
    Ok(Some(AuthenticatedKey {
        key_id: stored.id,
        user_id: stored.user_id,
        username: stored.username,
        role: stored.role,
        scopes: Scopes {
            read: stored.can_read,
            write: stored.can_write,
        },
        stale: stored.stale,
    }))
}

pub async fn touch(db: &Database, key_id: i64) -> sqlx::Result<()> {
    db::execute!(
        &mut db.write().await?,
        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
        key_id,
        Timestamp::now()
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_carry_256_bits_of_secret() {
        let (key, lookup) = generate();
        assert_eq!(key.len(), KEY_CHARS);
        let parsed = parse(&key).expect("a generated key parses");
        assert_eq!(parsed.lookup, lookup);
        let secret = &key[KEY_PREFIX.len() + LOOKUP_CHARS + 1..];
        assert_eq!(
            secret.len(),
            SECRET_CHARS,
            "43 base64url characters = 256 bits"
        );
    }

    #[test]
    fn keys_of_the_wrong_shape_are_refused() {
        let (key, _) = generate();
        let cases = [
            String::new(),
            "fk_".into(),
            key.replacen("fk_", "gk_", 1),
            key[..key.len() - 1].to_owned(),
            format!("{key}x"),
            key.replacen('_', "-", 2),
            format!("fk_ABCDEF012345_{}", &key[16..]),
        ];
        for case in cases {
            assert!(parse(&case).is_none(), "{case}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #[test]
            fn parsing_any_string_never_panics_and_accepts_only_the_exact_shape(key in ".{0,80}") {
                if let Some(parsed) = parse(&key) {
                    prop_assert_eq!(key.len(), KEY_CHARS);
                    prop_assert!(key.starts_with(KEY_PREFIX));
                    prop_assert_eq!(parsed.lookup.len(), LOOKUP_CHARS);
                }
            }

            #[test]
            fn every_key_of_the_documented_shape_parses(
                lookup in "[0-9a-f]{12}",
                secret in "[A-Za-z0-9_-]{43}",
            ) {
                let key = format!("fk_{lookup}_{secret}");
                prop_assert!(parse(&key).is_some());
            }
        }
    }
}
