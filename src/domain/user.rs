//! Users: names, emails and passwords that have passed their rules, and the queries on the
//! `users` table. The password hash is read only into `UserCredentials`, which is never
//! serialized.

use serde::Serialize;
use sqlx::prelude::FromRow;

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Role, account_mail,
        account_tokens::{self, TokenPurpose, TokenRequest},
        password::HashReservation,
        refresh::{self, IssuedRefreshToken},
        refresh_families::{self, RevokeReason},
        sessions::SessionClient,
        sign_ins,
    },
    config::Settings,
    crypto::Keyring,
    db::{self, Database, Executor, Lock, Timestamp, Transaction},
    domain::{Page, Paginated, email},
    error::{ApiError, Step},
    mail::{self, Notice},
};

mod deletion;
mod new_password;

/// Found with the other parsed parts of a user; their homes are their own modules (see there).
pub use super::{email::Email, username::Username};
pub use deletion::delete_account;
pub use new_password::{NewPassword, PasswordOwner};

#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub password: NewPassword,
}

/// What anyone may see of a user: their own profile, or any profile for an admin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserProfile {
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub id: i64,
    #[schema(pattern = "^[A-Za-z0-9_]{3,32}$", max_length = 32)]
    pub username: String,
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: Timestamp,
    /// A second factor (TOTP) is on: confirmed, so every login asks for a code.
    pub mfa_enabled: bool,
}

/// A profile as stored: the email sealed (see `Email::open`).
#[derive(FromRow)]
struct ProfileRow {
    id: i64,
    username: String,
    email_sealed: Option<Vec<u8>>,
    role: Role,
    disabled: bool,
    created_at: Timestamp,
    mfa_enabled: bool,
}

impl ProfileRow {
    fn open(self, keyring: &Keyring) -> anyhow::Result<UserProfile> {
        let sealed = self
            .email_sealed
            .ok_or_else(|| anyhow::anyhow!("the email of user {} is not sealed yet", self.id))?;
        Ok(UserProfile {
            email: Email::open(keyring, self.id, &sealed)?.as_str().to_owned(),
            id: self.id,
            username: self.username,
            role: self.role,
            disabled: self.disabled,
            created_at: self.created_at,
            mfa_enabled: self.mfa_enabled,
        })
    }
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
    /// The owner proved they read mail at the account's address.
    pub email_verified: bool,
}

/// What a registration did. The client is told the same for both, so the answer does not
/// say whether an address has an account; the mail does, to the address's owner only.
pub enum Registration {
    Created(UserProfile),
    /// The address has an account: its owner was sent a notice, nothing was created.
    EmailTaken,
}

/// Registers a user: hashes the password (off the async workers, before the write lock is
/// taken), then either stores the account with its verification mail, or, when the address
/// already has an account, mails a notice to its owner. Both paths hash and both write a
/// mail and an audit event in one transaction, so neither is faster. A taken username is a
/// 409 either way (usernames are public). See `create` for the uniqueness rules.
pub async fn register(
    db: &Database,
    keyring: &Keyring,
    settings: &Settings,
    hashing: &HashReservation,
    user: NewUser,
    audit: &AuditContext,
) -> Result<Registration, ApiError> {
    let NewUser {
        username,
        email,
        password,
    } = user;
    let password_hash = hashing.hash(password.into_secret()).await?;
    let mut tx = email::begin_indexing(db).await?;
    let registration = match email::holder(&mut tx, keyring, &email, None).await? {
        Some(holder) => {
            if username_taken(&mut tx, &username).await? {
                return Err(TAKEN);
            }
            account_mail::registration_attempt(&mut tx, keyring, holder, email).await?;
            let event = audit
                .event(AuditAction::Register, Outcome::Failure)
                .target(AuditTarget::User(holder))
                .reason("email already registered; its owner was notified");
            audit::record(&mut tx, &event).await?;
            Registration::EmailTaken
        }
        None => {
            let profile = insert_account(
                &mut tx,
                keyring,
                &username,
                &email,
                &password_hash,
                Role::User,
            )
            .await?;
            let request = TokenRequest {
                user_id: profile.id,
                purpose: TokenPurpose::EmailVerification,
                token_version: None,
                email: &email,
            };
            let token = account_tokens::issue(&mut tx, keyring, request).await?;
            account_mail::verify_email(&mut tx, keyring, settings, profile.id, email, &token)
                .await?;
            let event = audit
                .event(AuditAction::Register, Outcome::Success)
                .actor(profile.id)
                .target(AuditTarget::User(profile.id));
            audit::record(&mut tx, &event).await?;
            Registration::Created(profile)
        }
    };
    tx.commit().await?;
    Ok(registration)
}

const TAKEN: ApiError = ApiError::Conflict("The username or email is already registered.");

/// Creates an administrator (the command line's `create-admin`): 409 if the name or email is
/// taken (the name's UNIQUE constraint decides, on any number of instances; the email's blind
/// index under every key, on `Lock::EmailIndex`). The operator typed the address, so it
/// counts as verified.
pub async fn create_admin(
    db: &Database,
    keyring: &Keyring,
    hashing: &HashReservation,
    user: NewUser,
    audit: &AuditContext,
) -> Result<UserProfile, ApiError> {
    let NewUser {
        username,
        email,
        password,
    } = user;
    let password_hash = hashing.hash(password.into_secret()).await?;
    let mut tx = email::begin_indexing(db).await?;
    if email::holder(&mut tx, keyring, &email, None)
        .await?
        .is_some()
    {
        return Err(TAKEN);
    }
    let profile = insert_account(
        &mut tx,
        keyring,
        &username,
        &email,
        &password_hash,
        Role::Admin,
    )
    .await?;
    mark_email_verified(&mut tx, profile.id).await?;
    let event = audit
        .event(AuditAction::CreateAdmin, Outcome::Success)
        .actor(profile.id)
        .target(AuditTarget::User(profile.id));
    audit::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(profile)
}

/// `insert`, with a unique violation (the username, the only unique column left unchecked
/// under `Lock::EmailIndex`) as the 409 it is.
async fn insert_account(
    tx: &mut Transaction,
    keyring: &Keyring,
    username: &Username,
    email: &Email,
    password_hash: &str,
    role: Role,
) -> Result<UserProfile, ApiError> {
    insert(tx, keyring, username, email, password_hash, role)
        .await
        .map_err(|e| match e.downcast::<sqlx::Error>() {
            Ok(e) if crate::error::is_unique_violation(&e) => TAKEN,
            Ok(e) => e.into(),
            Err(e) => ApiError::Internal(e),
        })
}

async fn username_taken(tx: &mut Transaction, username: &Username) -> sqlx::Result<bool> {
    let found: Option<i64> = db::fetch_optional_scalar!(
        tx,
        "SELECT id FROM users WHERE username = $1",
        username.as_str()
    )
    .await?;
    Ok(found.is_some())
}

/// Records that the owner proved the address; `false` if it already was (or no account).
pub async fn mark_email_verified(tx: &mut Transaction, user_id: i64) -> sqlx::Result<bool> {
    let changed = db::execute!(
        tx,
        "UPDATE users SET email_verified_at = $2, updated_at = $2
         WHERE id = $1 AND email_verified_at IS NULL",
        user_id,
        Timestamp::now()
    )
    .await?;
    Ok(changed == 1)
}

/// Two statements in one transaction: the sealed email is bound to the row's id, which the
/// insert makes.
#[tracing::instrument(level = "debug", skip_all, fields(username = %username.as_str()))]
async fn insert(
    tx: &mut Transaction,
    keyring: &Keyring,
    username: &Username,
    email: &Email,
    password_hash: &str,
    role: Role,
) -> anyhow::Result<UserProfile> {
    let user_id: i64 = db::fetch_scalar!(
        &mut *tx,
        "INSERT INTO users (username, email_index, password_hash, role) VALUES ($1, $2, $3, $4)
         RETURNING id",
        username.as_str(),
        &email.blind_index(keyring)[..],
        password_hash,
        role
    )
    .await?;
    let row: ProfileRow = db::fetch_one!(
        tx,
        "UPDATE users SET email_sealed = $2 WHERE id = $1
         RETURNING id, username, email_sealed, role, disabled, created_at,
                   false AS mfa_enabled",
        user_id,
        email.seal(keyring, user_id)
    )
    .await?;
    row.open(keyring)
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn find_credentials(
    db: &mut impl Executor,
    username: &str,
) -> sqlx::Result<Option<UserCredentials>> {
    db::fetch_optional!(
        db,
        "SELECT id, username, password_hash, role, disabled, token_version,
                email_verified_at IS NOT NULL AS email_verified
         FROM users WHERE username = $1 AND deleted_at IS NULL",
        username
    )
    .await
}

#[tracing::instrument(level = "debug", skip(db))]
pub async fn credentials_by_id(
    db: &mut impl Executor,
    user_id: i64,
) -> sqlx::Result<Option<UserCredentials>> {
    db::fetch_optional!(
        db,
        "SELECT id, username, password_hash, role, disabled, token_version,
                email_verified_at IS NOT NULL AS email_verified
         FROM users WHERE id = $1 AND deleted_at IS NULL",
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
        sqlite: "SELECT id, username, password_hash, role, disabled, token_version,
                        email_verified_at IS NOT NULL AS email_verified
                 FROM users WHERE id = $1 AND deleted_at IS NULL",
        postgres: "SELECT id, username, password_hash, role, disabled, token_version,
                          email_verified_at IS NOT NULL AS email_verified
                   FROM users WHERE id = $1 AND deleted_at IS NULL FOR NO KEY UPDATE",
        user_id
    )
    .await
}

/// The account whose address is `email`, locked as `lock_account` does; `None` if no
/// account has it.
pub(crate) async fn lock_account_by_email(
    tx: &mut Transaction,
    keyring: &Keyring,
    email: &Email,
) -> sqlx::Result<Option<UserCredentials>> {
    match email::holder(tx, keyring, email, None).await? {
        Some(user_id) => lock_account(tx, user_id).await,
        None => Ok(None),
    }
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
pub(crate) async fn still_verified(
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
#[tracing::instrument(level = "debug", skip_all, fields(user_id = verified.id))]
pub async fn change_password(
    db: &Database,
    keyring: &Keyring,
    verified: &UserCredentials,
    new_hash: &str,
    audit: &AuditContext,
) -> Result<Option<i64>, ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    let still = still_verified(&mut tx, verified).await;
    let Some(account) = still.step("lock the account")? else {
        return Ok(None);
    };
    let version = replace_password(&mut tx, keyring, account.id, new_hash).await?;
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

/// Stores `new_hash` as the password of `user_id` and ends every session of the user: the
/// token version moves on (access tokens and reset links bound to the old one die) and the
/// refresh tokens are revoked; the owner is mailed a notice. Returns the new token version;
/// `tx` has the account locked.
pub(crate) async fn replace_password(
    tx: &mut Transaction,
    keyring: &Keyring,
    user_id: i64,
    new_hash: &str,
) -> Result<i64, ApiError> {
    update_password_hash(tx, user_id, new_hash)
        .await
        .step("store the new password hash")?;
    let version = bump_token_version(tx, user_id)
        .await
        .step("bump the token version")?;
    refresh_families::revoke_all_of_user(tx, user_id, RevokeReason::PasswordChange)
        .await
        .step("revoke the user's refresh tokens")?;
    mail::notify(tx, keyring, user_id, Notice::PasswordChanged)
        .await
        .step("write the password-changed notice")?;
    Ok(version)
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
/// there. A sign-in from a client the account never used mails a notice (`sign_ins`).
/// `upgraded_hash`, a fresh hash of the same password at today's parameters, replaces the
/// stored one in the same transaction.
#[tracing::instrument(level = "debug", skip_all, fields(user_id = verified.id))]
pub async fn start_session(
    db: &Database,
    keyring: &Keyring,
    verified: &UserCredentials,
    upgraded_hash: Option<String>,
    refresh_ttl_secs: u64,
    client: &SessionClient,
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
    let refresh = refresh::start_family(&mut tx, account.id, refresh_ttl_secs, client)
        .await
        .step("issue the refresh token")?;
    sign_ins::record(&mut tx, keyring, account.id, client).await?;
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

/// Stores `upgraded_hash`, a fresh hash of the password of `verified` at today's parameters,
/// if that is still the account's password (see `still_verified`): for a login that does not
/// start its session yet (a second factor is due).
pub async fn upgrade_password_hash(
    db: &Database,
    verified: &UserCredentials,
    upgraded_hash: &str,
) -> Result<(), ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    let still = still_verified(&mut tx, verified).await;
    if still.step("lock the account")?.is_some() {
        update_password_hash(&mut tx, verified.id, upgraded_hash)
            .await
            .step("store the upgraded password hash")?;
        tx.commit().await.step("commit")?;
    }
    Ok(())
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
#[tracing::instrument(level = "debug", skip(db, keyring, audit))]
pub async fn update_account(
    db: &Database,
    keyring: &Keyring,
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
        ensure_another_active_admin(
            &mut tx,
            "The last active administrator cannot be demoted or disabled.",
        )
        .await?;
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
    let profile = profile(&mut tx, keyring, user_id)
        .await
        .step("read the updated profile")?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await.step("commit")?;
    Ok(AccountUpdate {
        profile,
        new_token_version,
    })
}

/// Refuses (409, saying `refusal`) to let the last active administrator go; `tx` holds
/// `Lock::AccountAdministration`.
async fn ensure_another_active_admin(
    tx: &mut Transaction,
    refusal: &'static str,
) -> Result<(), ApiError> {
    let active_admins: i64 = db::fetch_scalar!(
        tx,
        "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled"
    )
    .await
    .step("count the active administrators")?;
    if active_admins <= 1 {
        return Err(ApiError::Conflict(refusal));
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
    refresh_families::revoke_all_of_user(tx, user_id, reason)
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

#[tracing::instrument(level = "debug", skip(db, keyring))]
pub async fn profile(
    db: &mut impl Executor,
    keyring: &Keyring,
    user_id: i64,
) -> anyhow::Result<Option<UserProfile>> {
    let row: Option<ProfileRow> = db::fetch_optional!(
        db,
        "SELECT id, username, email_sealed, role, disabled, created_at,
                EXISTS (SELECT 1 FROM totp_credentials t
                        WHERE t.user_id = users.id AND t.confirmed_at IS NOT NULL) AS mfa_enabled
         FROM users WHERE id = $1 AND deleted_at IS NULL",
        user_id
    )
    .await?;
    row.map(|row| row.open(keyring)).transpose()
}

#[tracing::instrument(level = "debug", skip(db, keyring))]
pub async fn list(
    db: &mut impl Executor,
    keyring: &Keyring,
    page: Page,
) -> anyhow::Result<Paginated<UserProfile>> {
    let rows: Vec<ProfileRow> = db::fetch_all!(
        db,
        "SELECT id, username, email_sealed, role, disabled, created_at,
                EXISTS (SELECT 1 FROM totp_credentials t
                        WHERE t.user_id = users.id AND t.confirmed_at IS NOT NULL) AS mfa_enabled
         FROM users WHERE deleted_at IS NULL ORDER BY id LIMIT $1 OFFSET $2",
        page.limit,
        page.offset
    )
    .await?;
    let items = rows
        .into_iter()
        .map(|row| row.open(keyring))
        .collect::<anyhow::Result<_>>()?;
    let total =
        db::fetch_scalar!(db, "SELECT count(*) FROM users WHERE deleted_at IS NULL").await?;
    Ok(page.of(items, total))
}
