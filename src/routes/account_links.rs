//! `/api/v1/auth/verify-email…`, `/api/v1/auth/password-reset…` and
//! `/api/v1/auth/confirm-email`: asking for a mailed link, and what its token does.
//!
//! Asking answers 202 before any work is done, the same body for every address, then does the
//! work in the background: the answer's timing cannot tell an address with an account from one
//! without (it would, if one path wrote a token and a mail and the other did not). Each route
//! passes the strict per-client limit; each account also has a mail budget per purpose
//! (`account_tokens`), so no number of clients can flood one inbox.

use std::fmt;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::{
    audit::AuditContext,
    auth::{
        account_links::{self, RequestedLink},
        email_change,
    },
    domain::{
        text,
        user::{Email, NewPassword},
    },
    error::{ApiError, ForField},
    extract::Json,
    security::{overload::InFlightSlot, rate_limit::Limiters},
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig, limiters: &Limiters) {
    let strict = || limiters.auth.clone();
    cfg.service(
        web::resource("/verify-email")
            .wrap(strict())
            .route(web::post().to(verify_email)),
    )
    .service(
        web::resource("/verify-email/resend")
            .wrap(strict())
            .route(web::post().to(resend_verification)),
    )
    .service(
        web::resource("/confirm-email")
            .wrap(strict())
            .route(web::post().to(confirm_email)),
    )
    .service(
        web::resource("/password-reset")
            .wrap(strict())
            .route(web::post().to(request_password_reset)),
    )
    .service(
        web::resource("/password-reset/confirm")
            .wrap(strict())
            .route(web::post().to(confirm_password_reset)),
    );
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[serde(deserialize_with = "text::trimmed")]
    #[validate(custom(function = Email::validate))]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// A token from a mailed link (the part after `token=` in its fragment).
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[validate(length(min = 1, max = 128))]
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmation {
    #[validate(length(min = 1, max = 128))]
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
    /// Same rules as at registration.
    #[validate(custom(function = NewPassword::validate))]
    #[schema(min_length = 12, max_length = 128, format = Password)]
    pub new_password: String,
}

/// Neither the token nor the password may reach a log through `{:?}`.
impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest").finish_non_exhaustive()
    }
}

impl fmt::Debug for PasswordResetConfirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordResetConfirmation")
            .finish_non_exhaustive()
    }
}

/// The one answer to every request for a link.
#[derive(Serialize, ToSchema)]
pub struct LinkRequested {
    pub detail: &'static str,
}

const LINK_REQUESTED: LinkRequested = LinkRequested {
    detail: "If an account may receive it, a link is on its way to that address.",
};

/// Runs the request for a link after the answer (see the module's doc); a failure there can
/// only be logged.
fn request_in_background(
    state: web::Data<AppState>,
    audit: AuditContext,
    email: Email,
    link: RequestedLink,
) -> HttpResponse {
    actix_web::rt::spawn(async move {
        if let Err(error) = account_links::request_link(&state, &audit, email, link).await {
            tracing::error!(?error, ?link, "a mailed link failed");
        }
    });
    HttpResponse::Accepted().json(LINK_REQUESTED)
}

fn parse_email(request: LinkRequest) -> Result<Email, ApiError> {
    request.validate()?;
    Email::parse(request.email).for_field("email")
}

/// Mark the account's email verified, with the token of the mailed link.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth",
    request_body = TokenRequest,
    responses((status = 204, description = "The address is verified"),
        (status = 400, description = "Unknown, expired or used token",
            body = crate::web::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn verify_email(
    state: web::Data<AppState>,
    audit: AuditContext,
    Json(request): Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    account_links::verify_email(&state, &audit, &request.token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Confirm the new address of an email change.
///
/// With the token of the link mailed to the new address (`#/confirm-email?token=…`). No
/// login needed: the token proves the caller reads mail at the new address. The old
/// address is told. A token is refused (400) once used, superseded by a newer request, after
/// 24 hours, or once the account's password changed.
#[utoipa::path(post, path = "/api/v1/auth/confirm-email", tag = "auth",
    request_body = TokenRequest,
    responses((status = 204, description = "The account has its new address, verified"),
        (status = 400, description = "Unknown, expired, used or outdated token",
            body = crate::web::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another account took the address since the request",
            body = crate::web::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn confirm_email(
    state: web::Data<AppState>,
    audit: AuditContext,
    Json(request): Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    email_change::confirm(&state, &audit, &request.token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mail a new verification link, if an unverified account has this address.
///
/// 202 either way.
#[utoipa::path(post, path = "/api/v1/auth/verify-email/resend", tag = "auth",
    request_body = LinkRequest,
    responses((status = 202, description = "Accepted, whatever the address",
        body = LinkRequested)))]
pub(crate) async fn resend_verification(
    state: web::Data<AppState>,
    audit: AuditContext,
    Json(request): Json<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = parse_email(request)?;
    Ok(request_in_background(
        state,
        audit,
        email,
        RequestedLink::EmailVerification,
    ))
}

/// Mail a password-reset link, if an account has this address: 202 either way.
///
/// The link is valid 30 minutes, once.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth",
    request_body = LinkRequest,
    responses((status = 202, description = "Accepted, whatever the address",
        body = LinkRequested)))]
pub(crate) async fn request_password_reset(
    state: web::Data<AppState>,
    audit: AuditContext,
    Json(request): Json<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = parse_email(request)?;
    Ok(request_in_background(
        state,
        audit,
        email,
        RequestedLink::PasswordReset,
    ))
}

/// Set a new password with the token of a reset link.
///
/// Every session of the user ends; API keys stay. A new password that breaks the rules is a
/// 422 and leaves the token unused.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth",
    request_body = PasswordResetConfirmation,
    responses((status = 204, description = "Changed; log in with the new password"),
        (status = 400, description = "Unknown, expired, used or outdated token",
            body = crate::web::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn confirm_password_reset(
    state: web::Data<AppState>,
    audit: AuditContext,
    slot: InFlightSlot,
    Json(request): Json<PasswordResetConfirmation>,
) -> Result<HttpResponse, ApiError> {
    request.validate()?;
    let new_password = NewPassword::parse(request.new_password).for_field("new_password")?;
    let hashing = state.passwords.reserve()?;
    // Counted by the hash queue from here: a request waiting for argon2 holds no slot.
    slot.release();
    account_links::reset_password(&state, &audit, &hashing, &request.token, new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}
