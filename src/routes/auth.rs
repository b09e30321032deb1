//! `/api/v1/auth`: registration, login, token refresh and logout.

use std::fmt;

use actix_web::{HttpResponse, http::header, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::{
    audit::{AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Role, Session,
        jwt::TokenSubject,
        password::Verification,
        refresh::{self, IssuedRefreshToken, Rotation},
    },
    domain::{
        text,
        user::{self, Email, NewPassword, NewUser, UserProfile, Username},
    },
    error::{ApiError, ForField},
    extract::Json,
    security::{
        client_ip::ClientKey, overload::InFlightSlot, password_attempts::PasswordAttempt,
        rate_limit::Limiters,
    },
    state::AppState,
    web::problem::Problem,
};

/// Register, login and refresh are what a brute-force attack hammers: each also passes the
/// strict per-client limit.
pub fn configure(cfg: &mut web::ServiceConfig, limiters: &Limiters) {
    let strict = || limiters.auth.clone();
    cfg.service(
        web::resource("/register")
            .wrap(strict())
            .route(web::post().to(register)),
    )
    .service(
        web::resource("/login")
            .wrap(strict())
            .route(web::post().to(login)),
    )
    .service(
        web::resource("/refresh")
            .wrap(strict())
            .route(web::post().to(refresh_tokens)),
    )
    .service(web::resource("/logout").route(web::post().to(logout)));
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice", "email": "alice@example.com",
    "password": "violet-kettle-umbrella"}))]
pub struct RegisterRequest {
    #[validate(custom(function = Username::validate))]
    #[schema(pattern = "^[A-Za-z0-9_]{3,32}$", min_length = 3, max_length = 32)]
    pub username: String,
    /// Stored and shown normalized: NFKC-folded, the domain in lower-case IDNA ASCII form
    /// (`xn--…`); invisible and format characters are refused.
    #[serde(deserialize_with = "text::trimmed")]
    #[validate(custom(function = Email::validate))]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 12 to 128 characters, and not one of the most common passwords.
    #[validate(custom(function = NewPassword::validate))]
    #[schema(min_length = 12, max_length = 128, format = Password)]
    pub password: String,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("username", &self.username)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl TryFrom<RegisterRequest> for NewUser {
    type Error = ApiError;

    fn try_from(request: RegisterRequest) -> Result<Self, ApiError> {
        request.validate()?;
        Ok(Self {
            username: Username::parse(request.username).for_field("username")?,
            email: Email::parse(request.email).for_field("email")?,
            password: NewPassword::parse(request.password).for_field("password")?,
        })
    }
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 64))]
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    #[validate(length(min = 1, max = NewPassword::MAX_CHARS))]
    #[schema(min_length = 1, max_length = 128, format = Password)]
    pub password: String,
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[validate(length(min = 1, max = 128))]
    #[schema(min_length = 1, max_length = 128)]
    pub refresh_token: String,
}

/// A session's tokens. The access token is a JWT for `Authorization: Bearer`; the refresh
/// token is opaque and single-use.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
}

/// An access token and a refresh token for one session.
fn token_response(
    state: &AppState,
    subject: TokenSubject<'_>,
    refresh: IssuedRefreshToken,
) -> Result<HttpResponse, ApiError> {
    let access = state.jwt.issue(subject, &refresh.family_id)?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in.as_secs(),
        refresh_token: refresh.token,
    }))
}

/// Create an account (role `user`).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses((status = 201, description = "The new account", body = UserProfile),
        (status = 409, description = "Username or email already registered",
            body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn register(
    state: web::Data<AppState>,
    audit: AuditContext,
    slot: InFlightSlot,
    Json(request): Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let new_user = NewUser::try_from(request)?;
    let hashing = state.passwords.reserve()?;
    // Counted by the hash queue from here: a request waiting for argon2 holds no slot.
    slot.release();
    let profile = user::create(&state.db, &hashing, new_user, Role::User, &audit).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, "/api/v1/users/me"))
        .json(profile))
}

/// Log in: an access token and a refresh token for a new session.
///
/// Unknown user, wrong password and disabled account take the same path (one argon2
/// verification) and get the same 401 body; only the audit trail (admins) tells them apart.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "The session's tokens", body = TokenResponse)))]
pub(crate) async fn login(
    state: web::Data<AppState>,
    audit: AuditContext,
    client: ClientKey,
    slot: InFlightSlot,
    Json(request): Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let LoginRequest { username, password } = request;
    let password = SecretString::from(password);
    let target = AuditTarget::login_name(&username);
    let refuse = |outcome, reason: &'static str, error: ApiError| {
        let event = audit
            .event(AuditAction::Login, outcome)
            .target(target.clone())
            .reason(reason);
        state.audit.submit(event);
        Err(error)
    };
    let attempt = match PasswordAttempt::start(&state, &audit, client, &username) {
        Ok(attempt) => attempt,
        Err(refused) => return refuse(Outcome::Denied, refused.reason, refused.error),
    };
    let fail = |reason: &'static str| {
        attempt.failed();
        refuse(Outcome::Failure, reason, ApiError::InvalidCredentials)
    };
    // Before the database read, so a login refused by a full hash queue costs nothing.
    let hashing = state.passwords.reserve()?;
    // Counted by the hash queue from here: a request waiting for argon2 holds no slot.
    slot.release();
    let account = user::find_credentials(&mut state.db.read().await?, &username).await?;
    let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
    let verification = hashing.verify(password.clone(), stored_hash).await?;
    let (account, needs_rehash) = match (account, verification) {
        (Some(account), Verification::Valid { needs_rehash }) if !account.disabled => {
            (account, needs_rehash)
        }
        (Some(_), Verification::Valid { .. }) => return fail("account disabled"),
        (Some(_), Verification::Invalid) => return fail("wrong password"),
        (None, _) => return fail("unknown user"),
    };
    let upgraded_hash = if needs_rehash {
        Some(hashing.hash(password).await?)
    } else {
        None
    };
    let refresh_ttl = state.settings.jwt.refresh_token_ttl.as_secs();
    let started =
        user::start_session(&state.db, &account, upgraded_hash, refresh_ttl, &audit).await?;
    // The password was right, but it or the account changed while argon2 ran: whatever
    // committed first (a password change, a disable) wins over this login.
    let Some(session) = started else {
        return refuse(
            Outcome::Failure,
            "the account changed during the login",
            ApiError::InvalidCredentials,
        );
    };
    attempt.succeeded();
    let account = session.account;
    token_response(
        &state,
        TokenSubject {
            user_id: account.id,
            username: &account.username,
            role: account.role,
            token_version: account.token_version,
        },
        session.refresh,
    )
}

/// Exchange a refresh token for a new pair of the same session.
///
/// The presented token is spent; presenting a spent one again ends the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "The session's new tokens", body = TokenResponse)))]
pub(crate) async fn refresh_tokens(
    state: web::Data<AppState>,
    audit: AuditContext,
    Json(request): Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    match refresh::rotate(&state.db, &request.refresh_token, &audit).await? {
        Rotation::Rotated { account, issued } => token_response(
            &state,
            TokenSubject {
                user_id: account.user_id,
                username: &account.username,
                role: account.role,
                token_version: account.token_version,
            },
            issued,
        ),
        Rotation::ReuseDetected { user_id, family_id } => {
            state.revocations.revoke_session(&family_id);
            tracing::warn!(
                target: "security",
                user_id,
                "a rotated refresh token was presented again; the session is revoked"
            );
            Err(ApiError::Unauthenticated)
        }
        Rotation::Refused => {
            let event = audit
                .event(AuditAction::Refresh, Outcome::Failure)
                .reason("unknown, expired or revoked refresh token");
            state.audit.submit(event);
            Err(ApiError::Unauthenticated)
        }
    }
}

/// End the caller's session: its refresh and access tokens stop working now.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Logged out")))]
pub(crate) async fn logout(
    state: web::Data<AppState>,
    caller: Session,
    audit: AuditContext,
) -> Result<HttpResponse, ApiError> {
    let session = caller.id.as_str();
    refresh::end_session(&state.db, caller.user_id, session, &audit).await?;
    state.revocations.revoke_session(session);
    Ok(HttpResponse::NoContent().finish())
}
