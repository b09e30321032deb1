//! `/api/v1/auth`: registration, login, token refresh and logout.

use std::fmt;

use actix_web::{HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::{
    audit::{AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Session,
        jwt::TokenSubject,
        login::{self, CredentialCheck},
        mfa::{
            self, ChallengeOutcome,
            challenge::{self, IssuedChallenge},
        },
        refresh::{self, IssuedRefreshToken, RefreshUse, Rotation},
        sessions::SessionClient,
    },
    domain::{
        text,
        user::{self, Email, NewPassword, NewUser, StartedSession, UserCredentials, Username},
    },
    error::{ApiError, ForField, Step},
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
        web::resource("/login/mfa")
            .wrap(strict())
            .route(web::post().to(login_mfa)),
    )
    .service(
        web::resource("/refresh")
            .wrap(strict())
            .route(web::post().to(refresh_tokens)),
    )
    .service(web::resource("/logout").route(web::post().to(logout)))
    .configure(|cfg| super::account_links::configure(cfg, limiters));
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
async fn token_response(
    state: &AppState,
    subject: TokenSubject<'_>,
    refresh: IssuedRefreshToken,
) -> Result<HttpResponse, ApiError> {
    let auth_time = u64::try_from(refresh.authenticated_at).unwrap_or(0);
    let access = state
        .jwt
        .issue(&state.keyring, subject, &refresh.family_id, auth_time)
        .await?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in.as_secs(),
        refresh_token: refresh.token,
    }))
}

/// A correct password of an account with MFA: no tokens yet. Send `mfa_token` with a code to
/// `POST /api/v1/auth/login/mfa`.
#[derive(Serialize, ToSchema)]
pub struct MfaChallengeResponse {
    /// Always `true`.
    pub mfa_required: bool,
    /// Single use, for `POST /api/v1/auth/login/mfa` only (not a bearer token); dies after 5
    /// wrong codes.
    #[schema(max_length = 64)]
    pub mfa_token: String,
    /// Seconds until `mfa_token` expires.
    #[schema(format = Int64, minimum = 1, maximum = 3600)]
    pub expires_in: u64,
}

/// What a correct password earns: the session's tokens, or a second-factor challenge.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenResponse),
    MfaRequired(MfaChallengeResponse),
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaRequest {
    /// From the login's answer.
    #[validate(length(min = 1, max = 128))]
    #[schema(min_length = 1, max_length = 128)]
    pub mfa_token: String,
    /// The authenticator's 6 digits, or an unused recovery code.
    #[validate(length(min = 1, max = 32))]
    #[schema(min_length = 1, max_length = 32, example = "123456")]
    pub code: String,
}

/// The one answer to a registration that was not refused: whether the address already had an
/// account is told only to its owner, by mail.
#[derive(Serialize, ToSchema)]
pub struct RegistrationAccepted {
    pub detail: &'static str,
}

const REGISTRATION_ACCEPTED: RegistrationAccepted = RegistrationAccepted {
    detail: "Check your mailbox: we sent a message to the address you gave.",
};

/// Create an account (role `user`).
///
/// 202 with the same body whether or not the email already has an account (its owner gets a
/// notice mail instead; a new account gets a verification link), after the same work: the
/// answer does not tell who is registered. A taken username is 409: usernames are public.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses((status = 202, description = "Accepted; see your mailbox",
            body = RegistrationAccepted),
        (status = 409, description = "Username already taken",
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
    user::register(
        &state.db,
        &state.keyring,
        &state.settings,
        &hashing,
        new_user,
        &audit,
    )
    .await?;
    Ok(HttpResponse::Accepted().json(REGISTRATION_ACCEPTED))
}

/// Log in: an access token and a refresh token for a new session (or an MFA challenge).
///
/// An account with MFA gets `{mfa_required: true, mfa_token, expires_in}` and no tokens (see
/// `/auth/login/mfa`).
///
/// Unknown user, wrong password and disabled account take the same path (one argon2
/// verification) and get the same 401 body; only the audit trail (admins) tells them apart.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "The session's tokens, or a second-factor challenge",
        body = LoginResponse)))]
pub(crate) async fn login(
    state: web::Data<AppState>,
    audit: AuditContext,
    client: ClientKey,
    session_client: SessionClient,
    slot: InFlightSlot,
    Json(request): Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let LoginRequest { username, password } = request;
    let password = SecretString::from(password);
    let login = Login {
        username: &username,
        password,
        session_client,
    };
    match open_session(&state, &audit, client, slot, login).await? {
        PasswordChecked::SessionStarted(session) => {
            token_response(&state, subject_of(&session.account), session.refresh).await
        }
        PasswordChecked::SecondFactorDue(issued) => Ok(HttpResponse::Ok().json(
            LoginResponse::MfaRequired(MfaChallengeResponse {
                mfa_required: true,
                mfa_token: issued.token,
                expires_in: issued.expires_in.as_secs(),
            }),
        )),
    }
}

/// What a right password led to.
enum PasswordChecked {
    SessionStarted(StartedSession),
    /// The account has MFA: no session until a code answers the challenge.
    SecondFactorDue(IssuedChallenge),
}

/// What a login presents, and from where.
struct Login<'a> {
    username: &'a str,
    password: SecretString,
    session_client: SessionClient,
}

/// Charges the attempt to the username's budget, checks the password and starts the session,
/// or issues a second-factor challenge for an account with MFA. Each refusal is recorded in
/// the audit trail with its reason; the client sees only the 401 (or the 429 of the budget).
async fn open_session(
    state: &AppState,
    audit: &AuditContext,
    client: ClientKey,
    slot: InFlightSlot,
    login: Login<'_>,
) -> Result<PasswordChecked, ApiError> {
    let Login {
        username,
        password,
        session_client,
    } = login;
    let refuse = |outcome, reason: &'static str, error: ApiError| {
        let event = audit
            .event(AuditAction::Login, outcome)
            .target(AuditTarget::login_name(username))
            .reason(reason);
        state.audit.submit(event);
        error
    };
    let rejected = |reason| refuse(Outcome::Failure, reason, ApiError::InvalidCredentials);
    let attempt = PasswordAttempt::start(state, audit, client, username)
        .await
        .map_err(|refused| refuse(Outcome::Denied, refused.reason, refused.error))?;
    // Before the database read, so a login refused by a full hash queue costs nothing.
    let hashing = state.passwords.reserve()?;
    // Counted by the hash queue from here: a request waiting for argon2 holds no slot.
    slot.release();
    let check = login::check_credentials(&state.db, &hashing, username, password);
    let verified = match check.await? {
        CredentialCheck::Verified(verified) => verified,
        CredentialCheck::Refused(refusal) => {
            let refused = rejected(refusal.reason());
            attempt.failed().await?;
            return Err(refused);
        }
    };
    // Told only after the right password: it says no more than a login would.
    if state.settings.require_email_verification && !verified.account.email_verified {
        attempt.succeeded().await;
        let reason = "email not verified";
        return Err(refuse(Outcome::Denied, reason, ApiError::EmailNotVerified));
    }
    if mfa::is_enabled(&mut state.db.read().await?, verified.account.id).await? {
        // Not a success yet: the username's failures stay counted until a code passes.
        return second_factor_due(state, audit, verified).await;
    }
    let started = user::start_session(
        &state.db,
        &state.keyring,
        &verified.account,
        verified.upgraded_hash,
        state.settings.jwt.refresh_token_ttl.as_secs(),
        &session_client,
        audit,
    )
    .await
    .step("start the session")?;
    // The password was right, but it or the account changed while argon2 ran: whatever
    // committed first (a password change, a disable) wins over this login.
    let Some(session) = started else {
        return Err(rejected("the account changed during the login"));
    };
    attempt.succeeded().await;
    Ok(PasswordChecked::SessionStarted(session))
}

/// Issues the challenge that a code must answer before the session of `verified` starts.
async fn second_factor_due(
    state: &AppState,
    audit: &AuditContext,
    verified: login::VerifiedAccount,
) -> Result<PasswordChecked, ApiError> {
    let account = &verified.account;
    if let Some(upgraded) = verified.upgraded_hash {
        user::upgrade_password_hash(&state.db, account, &upgraded).await?;
    }
    let issued = challenge::issue(&state.db, account.id, account.token_version)
        .await
        .step("issue the second-factor challenge")?;
    let event = audit
        .event(AuditAction::MfaChallenge, Outcome::Success)
        .actor(account.id)
        .target(AuditTarget::User(account.id))
        .reason("password accepted; second factor due");
    state.audit.submit(event);
    Ok(PasswordChecked::SecondFactorDue(issued))
}

/// Second step of a login with MFA: the `mfa_token` and a code for the session's tokens.
///
/// The code is a TOTP code or a recovery code.
///
/// Each code is charged to the account's login budget and a wrong one counts as a failed
/// login (lockout included), like a wrong password. The token is single use, and the fifth
/// wrong code kills it; a TOTP code (time step) is never accepted twice; a recovery code
/// works once.
#[utoipa::path(post, path = "/api/v1/auth/login/mfa", tag = "auth", request_body = LoginMfaRequest,
    responses((status = 200, description = "The session's tokens", body = TokenResponse),
        (status = 401, description = "Wrong code, or a dead `mfa_token`", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "Rate limited or locked", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn login_mfa(
    state: web::Data<AppState>,
    audit: AuditContext,
    client: ClientKey,
    session_client: SessionClient,
    Json(request): Json<LoginMfaRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let found = challenge::find(&mut state.db.read().await?, &request.mfa_token).await;
    let challenge = found
        .step("read the challenge")?
        .ok_or(ApiError::InvalidMfaToken)?;
    let account = user::credentials_by_id(&mut state.db.read().await?, challenge.user_id)
        .await
        .step("read the account")?
        .ok_or(ApiError::InvalidMfaToken)?;
    let user_id = account.id;
    let refuse = |outcome, reason: &'static str, error: ApiError| {
        let event = audit
            .event(AuditAction::Login, outcome)
            .target(AuditTarget::User(user_id))
            .reason(reason);
        state.audit.submit(event);
        error
    };
    let username = account.username.clone();
    let attempt = PasswordAttempt::start(&state, &audit, client, &username)
        .await
        .map_err(|refused| refuse(Outcome::Denied, refused.reason, refused.error))?;
    let code = request.code.trim();
    match mfa::answer_challenge(&state.db, &state.keyring, &challenge, code, &audit).await? {
        ChallengeOutcome::Passed(_) => {}
        ChallengeOutcome::Gone => return Err(ApiError::InvalidMfaToken),
        ChallengeOutcome::WrongCode => {
            let event = audit
                .event(AuditAction::MfaCodeFailure, Outcome::Failure)
                .target(AuditTarget::User(user_id))
                .reason("wrong code at login");
            state.audit.submit(event);
            attempt.failed().await?;
            return Err(ApiError::InvalidMfaCode);
        }
    }
    // The session is for the account as it was when the password was checked: a password
    // change, disable or role change since then wins (see `user::start_session`).
    let as_checked = UserCredentials {
        token_version: challenge.token_version,
        ..account
    };
    let started = user::start_session(
        &state.db,
        &state.keyring,
        &as_checked,
        None,
        state.settings.jwt.refresh_token_ttl.as_secs(),
        &session_client,
        &audit,
    )
    .await
    .step("start the session")?;
    let Some(session) = started else {
        let reason = "the account changed during the login";
        return Err(refuse(Outcome::Failure, reason, ApiError::InvalidMfaToken));
    };
    attempt.succeeded().await;
    token_response(&state, subject_of(&session.account), session.refresh).await
}

fn subject_of(account: &UserCredentials) -> TokenSubject<'_> {
    TokenSubject {
        user_id: account.id,
        username: &account.username,
        role: account.role,
        token_version: account.token_version,
    }
}

/// Exchange a refresh token for a new pair of the same session.
///
/// The presented token is spent; presenting a spent one again ends the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "The session's new tokens", body = TokenResponse)))]
pub(crate) async fn refresh_tokens(
    state: web::Data<AppState>,
    audit: AuditContext,
    client: SessionClient,
    Json(request): Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let refresh_use = RefreshUse {
        client: &client,
        idle: state.session_activity.policy(),
        audit: &audit,
    };
    match refresh::rotate(&state.db, &request.refresh_token, &refresh_use).await? {
        Rotation::Rotated { account, issued } => {
            token_response(
                &state,
                TokenSubject {
                    user_id: account.user_id,
                    username: &account.username,
                    role: account.role,
                    token_version: account.token_version,
                },
                issued,
            )
            .await
        }
        Rotation::ReuseDetected { user_id, family_id } => {
            state.revocations.revoke_session(&family_id).await;
            tracing::warn!(
                target: "security",
                user_id,
                "a rotated refresh token was presented again; the session is revoked"
            );
            Err(ApiError::Unauthenticated)
        }
        Rotation::Idle { family_id } => {
            state.revocations.revoke_session(&family_id).await;
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
    refresh::end_session(&state.db, caller.user_id, session, &audit)
        .await
        .step("end the session")?;
    state.revocations.revoke_session(session).await;
    Ok(HttpResponse::NoContent().finish())
}
