//! `/api/v1/users/me/mfa/totp`: turning TOTP on (enrol, then confirm with a code) and off.
//!
//! All need the login session itself (`Session<…>`): an API key cannot switch a second
//! factor. They stay open to an administrator whom `REQUIRE_ADMIN_MFA` keeps out of the admin
//! routes: this is how they get in.

use actix_web::{HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::{
    audit::{AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        Session, Write,
        mfa::{self, recovery_codes},
    },
    domain::user::NewPassword,
    error::ApiError,
    extract::Json,
    routes::users::OwnAccountChange,
    security::{client_ip::ClientKey, overload::InFlightSlot, password_attempts::PasswordAttempt},
    state::AppState,
    web::problem::Problem,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/me/mfa/totp")
            .route(web::post().to(enrol_totp))
            .route(web::delete().to(disable_totp)),
    )
    .service(web::resource("/me/mfa/totp/confirm").route(web::post().to(confirm_totp)));
}

/// What an authenticator app needs; shown once.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The shared secret, base32 (RFC 4648, no padding), for typing in by hand.
    #[schema(max_length = 64, pattern = "^[A-Z2-7]+$")]
    pub secret: String,
    /// `otpauth://totp/filmvault:<username>?secret=…&issuer=filmvault` (SHA-1, 6 digits, 30 s).
    #[schema(max_length = 512)]
    pub otpauth_uri: String,
    /// The URI as a QR code: a `data:image/svg+xml;base64,…` URI for an `<img>`.
    #[schema(max_length = 200_000)]
    pub qr_code: String,
}

/// A second-factor code: the authenticator's 6 digits, or a recovery code
/// (`xxxx-xxxx-xxxx-xxxx`, hyphens and case optional).
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    #[validate(length(min = 1, max = 32))]
    #[schema(min_length = 1, max_length = 32, example = "123456")]
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes for when the authenticator is lost: shown only now.
    #[schema(max_items = 10, max_length = 19)]
    pub recovery_codes: Vec<String>,
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableTotpRequest {
    /// The current password.
    #[validate(length(min = 1, max = NewPassword::MAX_CHARS))]
    #[schema(min_length = 1, max_length = 128, format = Password)]
    pub password: String,
    /// A TOTP code or an unused recovery code.
    #[validate(length(min = 1, max = 32))]
    #[schema(min_length = 1, max_length = 32)]
    pub code: String,
}

/// Start a TOTP enrolment: a new secret, pending until confirmed.
///
/// Enrolling again before confirming replaces the pending secret. 409 once TOTP is on: turn
/// it off first.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/totp", tag = "mfa", security(("bearer" = [])),
    responses((status = 201, description = "The secret, shown once", body = TotpEnrolment),
        (status = 401, description = "Not authenticated", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "An API key", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "TOTP is already on", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn enrol_totp(
    state: web::Data<AppState>,
    caller: Session<Write>,
    audit: AuditContext,
) -> Result<HttpResponse, ApiError> {
    let enrolment = mfa::begin_enrolment(&state.db, &state.keyring, caller.user_id, &audit).await?;
    Ok(HttpResponse::Created().json(TotpEnrolment {
        secret: enrolment.secret,
        otpauth_uri: enrolment.otpauth_uri,
        qr_code: enrolment.qr_code,
    }))
}

/// Confirm the pending enrolment with a code from the authenticator: TOTP is on from now.
///
/// Returns ten recovery codes, each good once, shown only now. A wrong code is 422 and
/// changes nothing; 409 if no enrolment is pending.
#[utoipa::path(post, path = "/api/v1/users/me/mfa/totp/confirm", tag = "mfa",
    request_body = TotpCode, security(("bearer" = [])),
    responses((status = 200, description = "TOTP is on", body = RecoveryCodes),
        (status = 401, description = "Not authenticated", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "An API key", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "No enrolment pending", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "Wrong code", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn confirm_totp(
    state: web::Data<AppState>,
    caller: Session<Write>,
    audit: AuditContext,
    Json(request): Json<TotpCode>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let confirmed = mfa::confirm(
        &state.db,
        &state.keyring,
        caller.user_id,
        request.code.trim(),
        &audit,
    )
    .await?;
    let Some(recovery_codes) = confirmed else {
        let event = audit
            .event(AuditAction::MfaCodeFailure, Outcome::Failure)
            .target(AuditTarget::User(caller.user_id))
            .reason("wrong code at TOTP confirmation");
        state.audit.submit(event);
        return Err(ApiError::invalid_field(
            "code",
            "is not the authenticator's current code; check the device's clock",
        ));
    };
    debug_assert_eq!(recovery_codes.len(), recovery_codes::COUNT);
    Ok(HttpResponse::Ok().json(RecoveryCodes { recovery_codes }))
}

/// Turn TOTP off, with the password and a code (TOTP or recovery code).
///
/// Both are checked within the account's login budget: a wrong one counts as a failed login.
/// The secret, the recovery codes and any pending login challenge are deleted.
#[utoipa::path(delete, path = "/api/v1/users/me/mfa/totp", tag = "mfa",
    request_body = DisableTotpRequest, security(("bearer" = [])),
    responses((status = 204, description = "TOTP is off"),
        (status = 401, description = "Wrong password or code", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "An API key", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "TOTP is not on", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "Rate limited or locked", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn disable_totp(
    state: web::Data<AppState>,
    caller: Session<Write>,
    audit: AuditContext,
    client: ClientKey,
    slot: InFlightSlot,
    Json(request): Json<DisableTotpRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let enabled = mfa::is_enabled(&mut state.db.read().await?, caller.user_id).await?;
    if !enabled {
        return Err(ApiError::Conflict("TOTP is not on for this account."));
    }
    let change =
        OwnAccountChange::load(&state, &audit, caller.user_id, AuditAction::MfaDisable).await?;
    change
        .check_password(client, slot, SecretString::from(request.password))
        .await?;
    // The code is a guess of its own, charged to the same budget as the password.
    let username = &change.account.username;
    let attempt = PasswordAttempt::start(&state, &audit, client, username)
        .await
        .map_err(|refused| change.refuse(Outcome::Denied, refused.reason, refused.error))?;
    let code = request.code.trim();
    if !mfa::disable(&state.db, &state.keyring, caller.user_id, code, &audit).await? {
        let event = audit
            .event(AuditAction::MfaCodeFailure, Outcome::Failure)
            .target(AuditTarget::User(caller.user_id))
            .reason("wrong code to turn TOTP off");
        state.audit.submit(event);
        attempt.failed().await?;
        return Err(ApiError::InvalidMfaCode);
    }
    attempt.succeeded().await;
    Ok(HttpResponse::NoContent().finish())
}
