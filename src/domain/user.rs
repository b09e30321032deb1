//! Users: names, emails and passwords that have passed their rules, and the queries on the
//! `users` table. The password hash is read only into `UserCredentials`, which is never
//! serialized.

use std::{borrow::Cow, fmt};

use icu_normalizer::ComposingNormalizerBorrowed;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::prelude::FromRow;
use validator::{ValidateEmail, ValidationError};

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Role, common_passwords,
        password::HashReservation,
        refresh::{self, IssuedRefreshToken, RevokeReason},
    },
    db::{self, Database, Executor, Lock, Timestamp, Transaction},
    domain::{Page, Paginated, text},
    error::{ApiError, Step},
};

/// Found with the other parsed parts of a user; its home is its own module (see there).
pub use super::username::Username;

/// An email address in the one form that is stored, shown and compared, so that two
/// addresses that look alike are one address (as usernames, which are plain ASCII):
/// - hidden characters (`text::is_hidden`: zero-width, soft hyphen, tags…) are refused;
/// - NFKC folds compatibility forms (`ｂｏｓｓ＠ｅｘａｍｐｌｅ．ｃｏｍ`) into the plain ones;
/// - the domain is kept in its IDNA ASCII form, lower-cased, as mail servers use it:
///   `bücher.example` is `xn--bcher-kva.example`, so a Cyrillic `а` in a domain shows as
///   `xn--…` instead of passing for the Latin letter;
/// - the local part is ASCII (the HTML form rules) and keeps its case, because RFC 5321
///   lets a mail server tell `Bob` from `bob`; two accounts still cannot differ only by
///   case: the column compares without case (SQLite's `NOCASE`, complete on ASCII; a
///   case-insensitive collation on PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A new password: 12–128 characters (ASVS 5.0: at least 12, at least 64 allowed, no
/// composition rules) and not one of the most common passwords.
pub struct NewPassword(SecretString);

impl NewPassword {
    pub const MIN_CHARS: u64 = 12;
    pub const MAX_CHARS: u64 = 128;

    pub fn validate(value: &str) -> Result<(), ValidationError> {
        text::check_length(value, Self::MIN_CHARS, Self::MAX_CHARS)?;
        if common_passwords::is_common(value) {
            return Err(ValidationError::new("common").with_message(Cow::Borrowed(
                "is one of the most commonly used passwords; choose another",
            )));
        }
        Ok(())
    }

    pub fn parse(value: String) -> Result<Self, ValidationError> {
        Self::validate(&value).map(|()| Self(SecretString::from(value)))
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub password: NewPassword,
}

/// What anyone may see of a user: their own profile, or any profile for an admin.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct UserProfile {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// Everything a login needs; holds the password hash, so it is not `Serialize`.
#[derive(FromRow)]
pub struct UserCredentials {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    pub token_version: i64,
}

/// Hashes the password (off the async workers, before the write lock is taken) and stores
/// the user with its audit event; 409 if the name or email is taken (the UNIQUE constraints
/// decide, on any number of instances). The answer does not say which, so registration
/// reveals as little as it can.
pub async fn create(
    db: &Database,
    hashing: &HashReservation,
    user: NewUser,
    role: Role,
    audit: &AuditContext,
) -> Result<UserProfile, ApiError> {
    let NewUser {
        username,
        email,
        password,
    } = user;
    let password_hash = hashing.hash(password.into_secret()).await?;
    let mut tx = db.begin().await?;
    let profile = insert(&mut tx, &username, &email, &password_hash, role)
        .await
        .map_err(|e| {
            if crate::error::is_unique_violation(&e) {
                ApiError::Conflict("The username or email is already registered.")
            } else {
                e.into()
            }
        })?;
    let action = match role {
        Role::User => AuditAction::Register,
        Role::Admin => AuditAction::CreateAdmin,
    };
    let event = audit
        .event(action, Outcome::Success)
        .actor(profile.id)
        .target(AuditTarget::User(profile.id));
    audit::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(profile)
}

#[tracing::instrument(skip_all, fields(username = %username.as_str()))]
async fn insert(
    db: &mut impl Executor,
    username: &Username,
    email: &Email,
    password_hash: &str,
    role: Role,
) -> sqlx::Result<UserProfile> {
    db::fetch_one!(
        db,
        "INSERT INTO users (username, email, password_hash, role) VALUES ($1, $2, $3, $4)
         RETURNING id, username, email, role, disabled, created_at",
        username.as_str(),
        email.as_str(),
        password_hash,
        role
    )
    .await
}

#[tracing::instrument(skip_all)]
pub async fn find_credentials(
    db: &mut impl Executor,
    username: &str,
) -> sqlx::Result<Option<UserCredentials>> {
    db::fetch_optional!(
        db,
        "SELECT id, username, password_hash, role, disabled, token_version
         FROM users WHERE username = $1",
        username
    )
    .await
}

#[tracing::instrument(skip(db))]
pub async fn credentials_by_id(
    db: &mut impl Executor,
    user_id: i64,
) -> sqlx::Result<Option<UserCredentials>> {
    db::fetch_optional!(
        db,
        "SELECT id, username, password_hash, role, disabled, token_version
         FROM users WHERE id = $1",
        user_id
    )
    .await
}

/// The account, its row locked until `tx` ends. Every transaction that decides on an
/// account's state (its password, token version, disabled flag, sessions, keys) reads it so,
/// first: on PostgreSQL they queue on this row across instances, and each sees the state the
/// previous one committed (SQLite's write transaction already excludes every other writer).
/// `NO KEY UPDATE` still lets other transactions insert rows that refer to the account.
pub(crate) async fn lock_account(
    tx: &mut Transaction,
    user_id: i64,
) -> sqlx::Result<Option<UserCredentials>> {
    db::fetch_optional!(
        tx,
        sqlite: "SELECT id, username, password_hash, role, disabled, token_version
                 FROM users WHERE id = $1",
        postgres: "SELECT id, username, password_hash, role, disabled, token_version
                   FROM users WHERE id = $1 FOR NO KEY UPDATE",
        user_id
    )
    .await
}

/// Makes every access token of the user worthless; returns the new version.
async fn bump_token_version(tx: &mut Transaction, user_id: i64) -> sqlx::Result<i64> {
    db::fetch_scalar!(
        tx,
        "UPDATE users SET token_version = token_version + 1, updated_at = $2
         WHERE id = $1 RETURNING token_version",
        user_id,
        Timestamp::now()
    )
    .await
}

/// The account as it is now, read (and locked, see `lock_account`) inside the write
/// transaction that acts on a password `verified` outside any transaction (a slow hash must
/// not hold the write lock), if that password is still its password: enabled, and at the
/// same token version, which every password change (and disable, and role change) bumps.
/// `None`: such a change committed meanwhile, and it wins.
async fn still_verified(
    tx: &mut Transaction,
    verified: &UserCredentials,
) -> sqlx::Result<Option<UserCredentials>> {
    Ok(lock_account(tx, verified.id)
        .await?
        .filter(|now| now.token_version == verified.token_version && !now.disabled))
}

/// Replaces the password of `verified` (whose current password was checked) and ends every
/// session of the user, in one transaction: other devices must log in again with the new
/// password. API keys stay; they are revoked one by one. Returns the new token version, or
/// `None` if another change committed since the check (see `still_verified`).
#[tracing::instrument(skip_all, fields(user_id = verified.id))]
pub async fn change_password(
    db: &Database,
    verified: &UserCredentials,
    new_hash: &str,
    audit: &AuditContext,
) -> Result<Option<i64>, ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    let still = still_verified(&mut tx, verified).await;
    let Some(account) = still.step("lock the account")? else {
        return Ok(None);
    };
    update_password_hash(&mut tx, account.id, new_hash)
        .await
        .step("store the new password hash")?;
    let version = bump_token_version(&mut tx, account.id)
        .await
        .step("bump the token version")?;
    refresh::revoke_all_of_user(&mut tx, account.id, RevokeReason::PasswordChange)
        .await
        .step("revoke the user's refresh tokens")?;
    let event = audit
        .event(AuditAction::PasswordChange, Outcome::Success)
        .actor(account.id)
        .target(AuditTarget::User(account.id));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")?;
    Ok(Some(version))
}

/// A login session, and the account as it was when the session started.
pub struct StartedSession {
    pub account: UserCredentials,
    pub refresh: IssuedRefreshToken,
}

/// Starts a login session for `verified`, whose password was checked: only if it is still
/// the account's password (see `still_verified`), in the transaction that starts the session,
/// so that a password change or disable committed meanwhile, which ended every session it
/// saw, cannot be outlived by this one. The tokens carry the role and token version read
/// there. `upgraded_hash`, a fresh hash of the same password at today's parameters, replaces
/// the stored one in the same transaction.
#[tracing::instrument(skip_all, fields(user_id = verified.id))]
pub async fn start_session(
    db: &Database,
    verified: &UserCredentials,
    upgraded_hash: Option<String>,
    refresh_ttl_secs: u64,
    audit: &AuditContext,
) -> Result<Option<StartedSession>, ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    let still = still_verified(&mut tx, verified).await;
    let Some(account) = still.step("lock the account")? else {
        return Ok(None);
    };
    if let Some(upgraded) = upgraded_hash {
        update_password_hash(&mut tx, account.id, &upgraded)
            .await
            .step("store the upgraded password hash")?;
        tracing::info!("password hash upgraded to current parameters");
    }
    let refresh = refresh::start_family(&mut tx, account.id, refresh_ttl_secs)
        .await
        .step("issue the refresh token")?;
    let event = audit
        .event(AuditAction::Login, Outcome::Success)
        .actor(account.id)
        .target(AuditTarget::User(account.id));
    audit::record(&mut tx, &event)
        .await
        .step("record the audit event")?;
    tx.commit().await.step("commit")?;
    Ok(Some(StartedSession { account, refresh }))
}

/// What an administrator may change about an account.
#[derive(Debug, Default, Clone, Copy)]
pub struct AccountChanges {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

#[derive(Debug)]
pub struct AccountUpdate {
    pub profile: UserProfile,
    /// Set when the change ended the user's sessions (role change or disable).
    pub new_token_version: Option<i64>,
}

/// Applies `changes` to `user_id`. Refuses to leave the service without an active admin.
/// A role change or a disable ends every session of the user at once.
///
/// The last-admin rule spans every admin's row, which no row lock covers: account changes
/// queue on `Lock::AccountAdministration` instead, so two instances demoting the last two
/// admins at once count one after the other.
#[tracing::instrument(skip(db, audit))]
pub async fn update_account(
    db: &Database,
    user_id: i64,
    changes: AccountChanges,
    audit: &AuditContext,
) -> Result<AccountUpdate, ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    tx.lock(Lock::AccountAdministration)
        .await
        .step("take the account administration lock")?;
    let current = lock_account(&mut tx, user_id)
        .await
        .step("lock the account")?
        .ok_or(ApiError::NotFound)?;
    let role = changes.role.unwrap_or(current.role);
    let disabled = changes.disabled.unwrap_or(current.disabled);
    let was_active_admin = current.role.is_admin() && !current.disabled;
    let stays_active_admin = role.is_admin() && !disabled;
    if was_active_admin && !stays_active_admin {
        ensure_another_active_admin(&mut tx).await?;
    }
    db::execute!(
        &mut tx,
        "UPDATE users SET role = $2, disabled = $3, updated_at = $4 WHERE id = $1",
        user_id,
        role,
        disabled,
        Timestamp::now()
    )
    .await
    .step("store the role and disabled flag")?;
    let ends_sessions = role != current.role || (disabled && !current.disabled);
    let new_token_version = if ends_sessions {
        Some(end_every_session(&mut tx, user_id, disabled).await?)
    } else {
        None
    };
    record_account_changes(&mut tx, audit, &current, role, disabled).await?;
    let profile = profile(&mut tx, user_id)
        .await
        .step("read the updated profile")?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await.step("commit")?;
    Ok(AccountUpdate {
        profile,
        new_token_version,
    })
}

/// Refuses to demote or disable the last active administrator; `tx` holds
/// `Lock::AccountAdministration`.
async fn ensure_another_active_admin(tx: &mut Transaction) -> Result<(), ApiError> {
    let active_admins: i64 = db::fetch_scalar!(
        tx,
        "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled"
    )
    .await
    .step("count the active administrators")?;
    if active_admins <= 1 {
        return Err(ApiError::Conflict(
            "The last active administrator cannot be demoted or disabled.",
        ));
    }
    Ok(())
}

/// Ends every session of `user_id` after a role change or a disable: revokes their refresh
/// tokens and returns the new token version, which makes their access tokens worthless.
async fn end_every_session(
    tx: &mut Transaction,
    user_id: i64,
    disabled: bool,
) -> Result<i64, ApiError> {
    let reason = if disabled {
        RevokeReason::Disabled
    } else {
        RevokeReason::Admin
    };
    refresh::revoke_all_of_user(tx, user_id, reason)
        .await
        .step("revoke the user's refresh tokens")?;
    bump_token_version(tx, user_id)
        .await
        .step("bump the token version")
}

/// One audit event per thing that changed: the role, and the disabled flag.
async fn record_account_changes(
    tx: &mut Transaction,
    audit: &AuditContext,
    before: &UserCredentials,
    role: Role,
    disabled: bool,
) -> Result<(), ApiError> {
    if role != before.role {
        let event = audit
            .event(AuditAction::RoleChange, Outcome::Success)
            .target(AuditTarget::User(before.id))
            .reason(format!("role={}", role.as_str()));
        audit::record(&mut *tx, &event)
            .await
            .step("record the role change")?;
    }
    if disabled != before.disabled {
        let action = if disabled {
            AuditAction::UserDisable
        } else {
            AuditAction::UserEnable
        };
        let event = audit
            .event(action, Outcome::Success)
            .target(AuditTarget::User(before.id));
        audit::record(tx, &event)
            .await
            .step("record the enable or disable")?;
    }
    Ok(())
}

async fn update_password_hash(
    tx: &mut Transaction,
    user_id: i64,
    password_hash: &str,
) -> sqlx::Result<()> {
    db::execute!(
        tx,
        "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
        user_id,
        password_hash,
        Timestamp::now()
    )
    .await?;
    Ok(())
}

#[tracing::instrument(skip(db))]
pub async fn profile(db: &mut impl Executor, user_id: i64) -> sqlx::Result<Option<UserProfile>> {
    db::fetch_optional!(
        db,
        "SELECT id, username, email, role, disabled, created_at FROM users WHERE id = $1",
        user_id
    )
    .await
}

#[tracing::instrument(skip(db))]
pub async fn list(db: &mut impl Executor, page: Page) -> sqlx::Result<Paginated<UserProfile>> {
    let items = db::fetch_all!(
        db,
        "SELECT id, username, email, role, disabled, created_at FROM users
         ORDER BY id LIMIT $1 OFFSET $2",
        page.limit,
        page.offset
    )
    .await?;
    let total = db::fetch_scalar!(db, "SELECT count(*) FROM users").await?;
    Ok(page.of(items, total))
}

/// Gives rows stored before emails were normalized their normal form (see `Email`); run at
/// every start, it finds nothing once they all have it. A row whose normal form another
/// account already holds is a look-alike of that account's address: it is left as it is
/// and logged with both ids for an administrator (the service still starts). Returns how
/// many rows changed.
pub async fn normalize_stored_emails(db: &Database) -> sqlx::Result<u64> {
    let mut db = db.write().await?;
    // Only rows that can differ from their normal form: any character outside printable
    // ASCII, or an upper-case letter after the `@`. (Pattern matching on PostgreSQL needs a
    // deterministic collation: "C", byte by byte, as SQLite's GLOB.)
    let candidates: Vec<(i64, String)> = db::fetch_all!(
        &mut db,
        sqlite: "SELECT id, email FROM users
                 WHERE email GLOB '*[^ -~]*' OR substr(email, instr(email, '@')) GLOB '*[A-Z]*'
                 ORDER BY id",
        postgres: "SELECT id, email FROM users
                   WHERE email COLLATE \"C\" ~ '[^ -~]'
                      OR substr(email, strpos(email COLLATE \"C\", '@')) COLLATE \"C\" ~ '[A-Z]'
                   ORDER BY id"
    )
    .await?;
    let mut changed = 0;
    for (user_id, stored) in candidates {
        let Some(normal) = normal_email(&stored).filter(|normal| *normal != stored) else {
            continue;
        };
        let update = db::execute!(
            &mut db,
            "UPDATE users SET email = $2, updated_at = $3 WHERE id = $1",
            user_id,
            &normal,
            Timestamp::now()
        )
        .await;
        match update {
            Ok(_) => changed += 1,
            Err(error) if crate::error::is_unique_violation(&error) => {
                let holder: Option<i64> = db::fetch_optional_scalar!(
                    &mut db,
                    "SELECT id FROM users WHERE email = $1",
                    &normal
                )
                .await?;
                tracing::warn!(
                    user_id,
                    same_address_as = holder,
                    "a stored email looks like another account's address once normalized; \
                     left unchanged for an administrator to settle"
                );
            }
            Err(error) => return Err(error),
        }
    }
    Ok(changed)
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
    fn passwords_need_twelve_characters_and_must_not_be_common() {
        assert!(NewPassword::validate("short-pass1").is_err());
        assert!(NewPassword::validate("Password1234").is_err());
        assert!(NewPassword::validate(&"x".repeat(129)).is_err());
        assert!(NewPassword::validate("violet-kettle-umbrella").is_ok());
    }

    #[test]
    fn a_new_password_never_prints_itself() {
        let password = NewPassword::parse("violet-kettle-umbrella".into()).unwrap();
        assert!(!format!("{password:?}").contains("violet"));
    }
}
