//! `/api/v1/users/me`: the caller's own account, password, email, API keys and sessions.
//!
//! Changing the password or email and managing API keys need the login session itself
//! (`Session<…>`): an API key can neither mint more keys nor lock its owner out. Changing the
//! password or email, creating a key and deleting the account also need a recent login
//! (`StepUp<…>`): a stolen session that is kept alive by refreshing cannot take the account over.

use actix_web::{HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::{
    audit::{AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Authenticated, Read, Session, StepUp, Write,
        api_key::{self, ApiKeyView, Scope},
        email_change,
        password::{HashReservation, Verification},
        principal::Scopes,
        sessions::{self, EndedBy, SessionView, Which},
    },
    domain::{
        text,
        user::{self, Email, NewPassword, PasswordOwner, UserCredentials, UserProfile},
    },
    error::{ApiError, ForField, Step},
    extract::Json,
    read_cache::FilmChange,
    security::{client_ip::ClientKey, overload::InFlightSlot, password_attempts::PasswordAttempt},
    state::AppState,
    web::problem::Problem,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/me")
            .route(super::read().to(me))
            .route(web::delete().to(delete_account)),
    )
    .service(web::resource("/me/password").route(web::put().to(change_password)))
    .service(web::resource("/me/email").route(web::put().to(change_email)))
    .service(
        web::resource("/me/api-keys")
            .route(super::read().to(list_api_keys))
            .route(web::post().to(create_api_key)),
    )
    .service(web::resource("/me/api-keys/{id}").route(web::delete().to(revoke_api_key)))
    .service(
        web::resource("/me/sessions")
            .route(super::read().to(list_sessions))
            .route(web::delete().to(end_other_sessions)),
    )
    .service(web::resource("/me/sessions/{id}").route(web::delete().to(end_session)))
    .service(web::resource("/me/votes").route(super::read().to(super::my_votes::my_votes)));
}

/// The caller's own profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The caller's profile", body = UserProfile)))]
pub(crate) async fn me(
    state: web::Data<AppState>,
    caller: Authenticated<Read>,
) -> Result<HttpResponse, ApiError> {
    // A token can outlive its account only until revocation catches it; 401, not 404.
    let profile = user::profile(&mut state.db.read().await?, &state.keyring, caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(profile))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[validate(length(min = 1, max = NewPassword::MAX_CHARS))]
    #[schema(min_length = 1, max_length = 128, format = Password)]
    pub current_password: String,
    /// Same rules as at registration.
    #[validate(custom(function = NewPassword::validate))]
    #[schema(min_length = 12, max_length = 128, format = Password)]
    pub new_password: String,
}

/// A password change whose new password differs from the current one and passed the rules
/// that need no owner (the others: `new_password_for`).
struct PasswordChange {
    current: SecretString,
    new: String,
}

impl TryFrom<ChangePasswordRequest> for PasswordChange {
    type Error = ApiError;

    fn try_from(request: ChangePasswordRequest) -> Result<Self, ApiError> {
        request.validate()?;
        if request.current_password == request.new_password {
            return Err(ApiError::invalid_field(
                "new_password",
                "must differ from the current password",
            ));
        }
        Ok(Self {
            new: request.new_password,
            current: SecretString::from(request.current_password),
        })
    }
}

/// Change the password. Every session of the user ends (API keys stay).
///
/// Step-up: needs a login at most `STEP_UP_MAX_AGE_SECS` old (refreshing does not count).
///
/// The current password is checked within the account's login budget, spent before it is
/// looked at, and a wrong one counts as a failed login (see `OwnAccountChange`).
#[utoipa::path(put, path = "/api/v1/users/me/password", tag = "users",
    request_body = ChangePasswordRequest, security(("bearer" = [])),
    responses((status = 204, description = "Changed; log in again"),
        (status = 401, description = "Not authenticated, or the login is older than \
            `STEP_UP_MAX_AGE_SECS` (`/problems/reauthentication-required`: log in again)",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API key: only the login session may",
            body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn change_password(
    state: web::Data<AppState>,
    caller: StepUp<Write>,
    audit: AuditContext,
    client: ClientKey,
    slot: InFlightSlot,
    Json(request): Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let PasswordChange { current, new } = PasswordChange::try_from(request)?;
    let new = new_password_for(&state, caller.user_id, new).await?;
    let change =
        OwnAccountChange::load(&state, &audit, caller.user_id, AuditAction::PasswordChange).await?;
    let hashing = change.check_password(client, slot, current).await?;
    let new_hash = hashing
        .hash(new.into_secret())
        .await
        .step("hash the new password")?;
    let changed = user::change_password(
        &state.db,
        &state.keyring,
        &change.account,
        &new_hash,
        &audit,
    )
    .await
    .step("store the new password")?;
    // Another change committed while this one was verified: the password checked here is no
    // longer the current one.
    let Some(version) = changed else {
        return Err(change.rejected("the password changed during the check"));
    };
    state
        .revocations
        .set_version(change.account.id, version)
        .await;
    Ok(HttpResponse::NoContent().finish())
}

/// `new` if it passes every rule for the account `user_id` (checked before the current
/// password, so a refused one spends nothing of the login budget).
async fn new_password_for(
    state: &AppState,
    user_id: i64,
    new: String,
) -> Result<NewPassword, ApiError> {
    let account = user::profile(&mut state.db.read().await?, &state.keyring, user_id)
        .await
        .step("read the account's profile")?
        .ok_or(ApiError::Unauthenticated)?;
    let owner = PasswordOwner {
        username: &account.username,
        email: &account.email,
    };
    NewPassword::parse(new, owner).for_field("new_password")
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    #[serde(deserialize_with = "text::trimmed")]
    #[validate(custom(function = Email::validate))]
    #[schema(format = Email, max_length = 254)]
    pub new_email: String,
    /// The current password.
    #[validate(length(min = 1, max = NewPassword::MAX_CHARS))]
    #[schema(min_length = 1, max_length = 128, format = Password)]
    pub password: String,
}

/// The answer to every accepted email change, whether or not the new address is taken.
#[derive(Serialize, ToSchema)]
pub struct EmailChangeRequested {
    #[schema(max_length = 256)]
    pub detail: &'static str,
}

const EMAIL_CHANGE_REQUESTED: EmailChangeRequested = EmailChangeRequested {
    detail: "A link is on its way to the new address if it may be used; the account keeps its \
             current address until the link is opened.",
};

/// Change the email address: the new address is mailed a link to confirm it.
///
/// The account keeps its current address (for login mails, resets and notices) until the link
/// is opened (`POST /api/v1/auth/confirm-email` with the token from the link's fragment,
/// `#/confirm-email?token=…`). The current address is told of the request. The answer is the
/// same 202 whether or not another account holds the new address (that account's owner is
/// told instead, and no link is sent): it does not tell which addresses are registered. A
/// newer request supersedes an older one; changing the password cancels it. At most 3 links
/// an hour per account; beyond that the request is accepted and recorded, and nothing is sent.
///
/// The password is checked within the same budget as a password change: a wrong one counts as
/// a failed login.
#[utoipa::path(put, path = "/api/v1/users/me/email", tag = "users",
    request_body = ChangeEmailRequest, security(("bearer" = [])),
    responses((status = 202, description = "Accepted, whether or not the address is taken",
            body = EmailChangeRequested),
        (status = 401, description = "Wrong password, or a login older than \
            `STEP_UP_MAX_AGE_SECS` (`/problems/reauthentication-required`: log in again)",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an address, or already the account's", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn change_email(
    state: web::Data<AppState>,
    caller: StepUp<Write>,
    audit: AuditContext,
    client: ClientKey,
    slot: InFlightSlot,
    Json(request): Json<ChangeEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let new_email = Email::parse(request.new_email).for_field("new_email")?;
    let change = OwnAccountChange::load(
        &state,
        &audit,
        caller.user_id,
        AuditAction::EmailChangeRequest,
    )
    .await?;
    let password = SecretString::from(request.password);
    change.check_password(client, slot, password).await?;
    if !email_change::request(&state, &audit, &change.account, new_email).await? {
        return Err(change.rejected("the password changed during the check"));
    }
    Ok(HttpResponse::Accepted().json(EMAIL_CHANGE_REQUESTED))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountRequest {
    /// The current password.
    #[validate(length(min = 1, max = NewPassword::MAX_CHARS))]
    #[schema(min_length = 1, max_length = 128, format = Password)]
    pub password: String,
}

/// Delete the caller's account.
///
/// Every access token, refresh token and API key of the account stops at once, on every
/// instance. Votes are withdrawn (the counters drop by exactly those
/// votes); films stay in the catalogue without an author; the email and the username are
/// freed. The last active administrator cannot delete their account (409).
///
/// The password is checked within the same budget as a password change: a wrong one counts
/// as a failed login. Step-up: needs a login at most `STEP_UP_MAX_AGE_SECS` old.
#[utoipa::path(delete, path = "/api/v1/users/me", tag = "users",
    request_body = DeleteAccountRequest, security(("bearer" = [])),
    responses((status = 204, description = "Deleted"),
        (status = 401, description = "Wrong password (`/problems/invalid-credentials`), not \
            authenticated, or the login is older than `STEP_UP_MAX_AGE_SECS` \
            (`/problems/reauthentication-required`: log in again)", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "An API key: only the login session may",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last active administrator", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn delete_account(
    state: web::Data<AppState>,
    caller: StepUp<Write>,
    audit: AuditContext,
    client: ClientKey,
    slot: InFlightSlot,
    Json(request): Json<DeleteAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let change =
        OwnAccountChange::load(&state, &audit, caller.user_id, AuditAction::AccountDelete).await?;
    let password = SecretString::from(request.password);
    change.check_password(client, slot, password).await?;
    let deleted = user::delete_account(&state.db, &change.account, &audit)
        .await
        .map_err(|error| match error {
            ApiError::Conflict(_) => {
                change.refuse(Outcome::Denied, "last active administrator", error)
            }
            error => error,
        })?;
    let Some(version) = deleted else {
        return Err(change.rejected("the password changed during the check"));
    };
    state
        .revocations
        .set_version(change.account.id, version)
        .await;
    // Its votes are withdrawn and its films shown without an author.
    state.reads.changed(FilmChange::Everything).await;
    Ok(HttpResponse::NoContent().finish())
}

/// A change to the caller's own account that their current password must confirm; every
/// refusal is recorded under `action`.
pub(super) struct OwnAccountChange<'a> {
    state: &'a AppState,
    audit: &'a AuditContext,
    pub(super) account: UserCredentials,
    action: AuditAction,
}

impl<'a> OwnAccountChange<'a> {
    pub(super) async fn load(
        state: &'a AppState,
        audit: &'a AuditContext,
        user_id: i64,
        action: AuditAction,
    ) -> Result<Self, ApiError> {
        let account = user::credentials_by_id(&mut state.db.read().await?, user_id)
            .await
            .step("read the account's credentials")?
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Self {
            state,
            audit,
            account,
            action,
        })
    }

    /// Records the refusal and returns the error to answer with.
    pub(super) fn refuse(
        &self,
        outcome: Outcome,
        reason: &'static str,
        error: ApiError,
    ) -> ApiError {
        let event = self
            .audit
            .event(self.action, outcome)
            .target(AuditTarget::User(self.account.id))
            .reason(reason);
        self.state.audit.submit(event);
        error
    }

    fn rejected(&self, reason: &'static str) -> ApiError {
        self.refuse(Outcome::Failure, reason, ApiError::InvalidCredentials)
    }

    /// Checks `password` within the account's login budget, spent before it is looked at; a
    /// wrong one counts as a failed login: no route is a side door for guessing with a
    /// stolen access token. Returns the place in the hashing queue, for a hash still to make.
    pub(super) async fn check_password(
        &self,
        client: ClientKey,
        slot: InFlightSlot,
        password: SecretString,
    ) -> Result<HashReservation, ApiError> {
        let attempt =
            PasswordAttempt::start(self.state, self.audit, client, &self.account.username)
                .await
                .map_err(|refused| self.refuse(Outcome::Denied, refused.reason, refused.error))?;
        let hashing = self.state.passwords.reserve()?;
        // Counted by the hash queue from here: a request waiting for argon2 holds no slot.
        slot.release();
        let verification = hashing
            .verify(password, Some(self.account.password_hash.clone()))
            .await
            .step("verify the current password")?;
        if verification == Verification::Invalid {
            let refused = self.rejected("wrong current password");
            attempt.failed().await?;
            return Err(refused);
        }
        attempt.succeeded().await;
        Ok(hashing)
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[serde(deserialize_with = "text::trimmed")]
    #[validate(custom(function = validate_key_name))]
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    #[validate(length(min = 1, max = 2))]
    #[schema(min_items = 1, max_items = 2)]
    pub scopes: Vec<Scope>,
}

/// A new key: the only time `key` is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// Send as `X-API-Key`. Store it now: it cannot be shown again.
    #[schema(pattern = "^fk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$", max_length = 59)]
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// At most `MAX_KEYS_PER_USER` (20) live keys.
    #[schema(max_items = 20)]
    pub items: Vec<ApiKeyView>,
}

fn validate_key_name(name: &str) -> Result<(), validator::ValidationError> {
    text::check_display_text(name, 1, 64)
}

/// Create an API key for scripts, with `read` and/or `write` scope.
///
/// Step-up: needs a login at most `STEP_UP_MAX_AGE_SECS` old (refreshing does not count).
#[utoipa::path(post, path = "/api/v1/users/me/api-keys", tag = "users",
    request_body = CreateApiKeyRequest, security(("bearer" = [])),
    responses((status = 201, description = "The key, shown once", body = CreatedApiKey),
        (status = 401, description = "Not authenticated, or the login is older than \
            `STEP_UP_MAX_AGE_SECS` (`/problems/reauthentication-required`: log in again)",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API key: only the login session may",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Too many active keys", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn create_api_key(
    state: web::Data<AppState>,
    caller: StepUp<Write>,
    audit: AuditContext,
    Json(request): Json<CreateApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let scopes = Scopes {
        read: request.scopes.contains(&Scope::Read),
        write: request.scopes.contains(&Scope::Write),
    };
    let (view, key) = api_key::create(
        &state.db,
        &state.keyring,
        caller.user_id,
        &request.name,
        scopes,
        &audit,
    )
    .await
    .step("create the key")?;
    Ok(HttpResponse::Created().json(CreatedApiKey { view, key }))
}

/// The caller's live API keys, without their secrets.
#[utoipa::path(get, path = "/api/v1/users/me/api-keys", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The keys", body = ApiKeyList)))]
pub(crate) async fn list_api_keys(
    state: web::Data<AppState>,
    caller: Session<Read>,
) -> Result<HttpResponse, ApiError> {
    let keys = api_key::list(&mut state.db.read().await?, caller.user_id).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList { items: keys }))
}

/// Revoke one of the caller's keys (another user's key id is a 404).
#[utoipa::path(delete, path = "/api/v1/users/me/api-keys/{id}", tag = "users",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_api_key(
    state: web::Data<AppState>,
    caller: Session<Write>,
    audit: AuditContext,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    if api_key::revoke(&state.db, caller.user_id, *id, &audit).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// The most recently used first, at most `sessions::MAX_LISTED`.
    #[schema(max_items = 100)]
    pub items: Vec<SessionView>,
}

/// The caller's live sessions (logins), the calling one marked `current`.
#[utoipa::path(get, path = "/api/v1/users/me/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The sessions", body = SessionList)))]
pub(crate) async fn list_sessions(
    state: web::Data<AppState>,
    caller: Session<Read>,
) -> Result<HttpResponse, ApiError> {
    let idle = state.session_activity.policy();
    let items = sessions::list(&state.db, caller.user_id, Some(&caller.id), idle).await?;
    Ok(HttpResponse::Ok().json(SessionList { items }))
}

/// End one of the caller's sessions: its refresh and access tokens stop at once.
///
/// Another user's session id, or an ended one, is a 404.
#[utoipa::path(delete, path = "/api/v1/users/me/sessions/{id}", tag = "users",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Ended"),
        (status = 404, description = "No such live session of the caller", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn end_session(
    state: web::Data<AppState>,
    caller: Session<Write>,
    audit: AuditContext,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let which = Which::One(id.as_str());
    let ended = sessions::end(&state.db, caller.user_id, which, EndedBy::User, &audit).await?;
    if ended.is_empty() {
        return Err(ApiError::NotFound);
    }
    revoke_access_tokens(&state, &ended).await;
    Ok(HttpResponse::NoContent().finish())
}

/// End every session of the caller but the calling one.
#[utoipa::path(delete, path = "/api/v1/users/me/sessions", tag = "users",
    security(("bearer" = [])), responses((status = 204, description = "Ended")))]
pub(crate) async fn end_other_sessions(
    state: web::Data<AppState>,
    caller: Session<Write>,
    audit: AuditContext,
) -> Result<HttpResponse, ApiError> {
    let which = Which::AllBut(Some(&caller.id));
    let ended = sessions::end(&state.db, caller.user_id, which, EndedBy::User, &audit).await?;
    revoke_access_tokens(&state, &ended).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Ended sessions' access tokens stop here and, through the broadcast, on every instance.
pub(crate) async fn revoke_access_tokens(state: &AppState, ended: &[String]) {
    for session in ended {
        state.revocations.revoke_session(session).await;
    }
}
