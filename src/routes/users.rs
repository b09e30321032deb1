//! `/api/v1/users/me`: the caller's own account, password and API keys.
//!
//! Changing the password and managing API keys need the login session itself (`Session<…>`):
//! an API key can neither mint more keys nor lock its owner out.

use actix_web::{HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::{
    audit::{AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Authenticated, Read, Session, Write,
        api_key::{self, ApiKeyView, Scope},
        password::Verification,
        principal::Scopes,
    },
    domain::{
        text,
        user::{self, NewPassword, UserProfile},
    },
    error::{ApiError, ForField, Step},
    extract::Json,
    security::{client_ip::ClientKey, overload::InFlightSlot, password_attempts::PasswordAttempt},
    state::AppState,
    web::problem::Problem,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/me").route(web::get().to(me)))
        .service(web::resource("/me/password").route(web::put().to(change_password)))
        .service(
            web::resource("/me/api-keys")
                .route(web::get().to(list_api_keys))
                .route(web::post().to(create_api_key)),
        )
        .service(web::resource("/me/api-keys/{id}").route(web::delete().to(revoke_api_key)));
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

/// A password change whose new password passed its rules and differs from the current one.
struct PasswordChange {
    current: SecretString,
    new: NewPassword,
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
            new: NewPassword::parse(request.new_password).for_field("new_password")?,
            current: SecretString::from(request.current_password),
        })
    }
}

/// Change the password. Every session of the user ends (API keys stay).
///
/// The current password is checked within the account's login budget, spent before it is
/// looked at, and a wrong one counts as a failed login: this route is no side door for
/// guessing with a stolen access token.
#[utoipa::path(put, path = "/api/v1/users/me/password", tag = "users",
    request_body = ChangePasswordRequest, security(("bearer" = [])),
    responses((status = 204, description = "Changed; log in again")))]
pub(crate) async fn change_password(
    state: web::Data<AppState>,
    caller: Session<Write>,
    audit: AuditContext,
    client: ClientKey,
    slot: InFlightSlot,
    Json(request): Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let PasswordChange { current, new } = PasswordChange::try_from(request)?;
    let account = user::credentials_by_id(&mut state.db.read().await?, caller.user_id)
        .await
        .step("read the account's credentials")?
        .ok_or(ApiError::Unauthenticated)?;
    let refuse = |outcome, reason: &'static str, error: ApiError| {
        let event = audit
            .event(AuditAction::PasswordChange, outcome)
            .target(AuditTarget::User(account.id))
            .reason(reason);
        state.audit.submit(event);
        error
    };
    let rejected = |reason| refuse(Outcome::Failure, reason, ApiError::InvalidCredentials);
    let attempt = PasswordAttempt::start(&state, &audit, client, &account.username)
        .await
        .map_err(|refused| refuse(Outcome::Denied, refused.reason, refused.error))?;
    let hashing = state.passwords.reserve()?;
    // Counted by the hash queue from here: a request waiting for argon2 holds no slot.
    slot.release();
    let verification = hashing
        .verify(current, Some(account.password_hash.clone()))
        .await
        .step("verify the current password")?;
    if verification == Verification::Invalid {
        let refused = rejected("wrong current password");
        attempt.failed().await?;
        return Err(refused);
    }
    attempt.succeeded().await;
    let new_hash = hashing
        .hash(new.into_secret())
        .await
        .step("hash the new password")?;
    let changed = user::change_password(&state.db, &state.keyring, &account, &new_hash, &audit)
        .await
        .step("store the new password")?;
    // Another change committed while this one was verified: the password checked here is no
    // longer the current one.
    let Some(version) = changed else {
        return Err(rejected("the password changed during the check"));
    };
    state.revocations.set_version(account.id, version).await;
    Ok(HttpResponse::NoContent().finish())
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
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

fn validate_key_name(name: &str) -> Result<(), validator::ValidationError> {
    text::check_display_text(name, 1, 64)
}

/// Create an API key for scripts, with `read` and/or `write` scope.
#[utoipa::path(post, path = "/api/v1/users/me/api-keys", tag = "users",
    request_body = CreateApiKeyRequest, security(("bearer" = [])),
    responses((status = 201, description = "The key, shown once", body = CreatedApiKey),
        (status = 409, description = "Too many active keys", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn create_api_key(
    state: web::Data<AppState>,
    caller: Session<Write>,
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
