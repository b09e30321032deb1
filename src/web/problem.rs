//! `ApiError`'s one mapping to HTTP: `application/problem+json` (RFC 9457) with the request
//! id, so a user can quote it and an operator can find the log line.
//!
//! Every variant is described once, in `describe`: status, problem type, title, detail, the
//! fields at fault and the header it needs. Internal errors are logged here, once, with their
//! whole cause chain.

use std::time::Duration;

use actix_web::{
    Error, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    middleware::Next,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    error::{ApiError, FieldError},
    telemetry::current_request_id,
};

pub const PROBLEM_JSON: &str = "application/problem+json";
const NOT_FOUND_DETAIL: &str = "The requested resource does not exist.";
const INTERNAL_DETAIL: &str =
    "Something went wrong on our side; quote the request_id if you report it.";

/// An RFC 9457 problem: every error response of this API.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem, e.g. `/problems/rate-limited`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Also in the `X-Request-Id` header and in the server's log line for this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The fields at fault, for 400 and 422.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Everything the response to one error says.
struct Description<'a> {
    status: StatusCode,
    slug: &'a str,
    title: &'a str,
    detail: String,
    errors: &'a [FieldError],
    header: Option<(HeaderName, HeaderValue)>,
}

impl<'a> Description<'a> {
    fn new(status: StatusCode, slug: &'a str, title: &'a str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            errors: &[],
            header: None,
        }
    }

    fn fields(self, errors: &'a [FieldError]) -> Self {
        Self { errors, ..self }
    }

    fn retry_after(self, wait: Duration) -> Self {
        Self {
            header: Some((header::RETRY_AFTER, whole_seconds(wait).into())),
            ..self
        }
    }

    fn bearer_challenge(self) -> Self {
        let challenge = HeaderValue::from_static("Bearer realm=\"filmvault\"");
        Self {
            header: Some((header::WWW_AUTHENTICATE, challenge)),
            ..self
        }
    }

    /// RFC 9470 (OAuth 2.0 Step Up Authentication Challenge): the token is valid, but its
    /// authentication is older than `max_age`.
    fn step_up_challenge(self, max_age: Duration) -> Self {
        let challenge = format!(
            "Bearer realm=\"filmvault\", error=\"insufficient_user_authentication\", \
             error_description=\"A more recent authentication is required\", max_age={}",
            max_age.as_secs()
        );
        Self {
            header: HeaderValue::try_from(challenge)
                .ok()
                .map(|challenge| (header::WWW_AUTHENTICATE, challenge)),
            ..self
        }
    }

    fn into_response(self) -> HttpResponse {
        let problem = Problem {
            kind: format!("/problems/{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            request_id: current_request_id(),
            errors: self.errors.to_vec(),
        };
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let Some(header) = self.header {
            response.insert_header(header);
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

/// The one table from error to response.
// Deliberately the single table, one arm per variant, however long: split, it would drift.
fn describe(error: &ApiError) -> Description<'_> {
    use ApiError as E;
    match error {
        E::Validation(errors) => Description::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-error",
            "Your request is not valid",
            "One or more fields are invalid; see `errors`.",
        )
        .fields(errors),
        E::BadRequest { detail, errors } => Description::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
        .fields(errors),
        E::Unauthenticated => Description::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            "Send a valid bearer token in `Authorization` or an API key in `X-API-Key`.",
        )
        .bearer_challenge(),
        E::InvalidCredentials => Description::new(
            StatusCode::UNAUTHORIZED,
            "invalid-credentials",
            "Invalid credentials",
            "The username or password is incorrect.",
        ),
        E::Forbidden => Description::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "You are not allowed to perform this action.",
        ),
        E::ReauthenticationRequired { max_age } => Description::new(
            StatusCode::UNAUTHORIZED,
            "reauthentication-required",
            "Re-authentication required",
            format!(
                "This action needs a login at most {} seconds old; \
                 log in again (`POST /api/v1/auth/login`) and retry with the new access token.",
                max_age.as_secs()
            ),
        )
        .step_up_challenge(*max_age),
        E::EmailNotVerified => Description::new(
            StatusCode::FORBIDDEN,
            "email-not-verified",
            "Email not verified",
            "Open the link mailed to your address first; \
             `POST /api/v1/auth/verify-email/resend` sends a new one.",
        ),
        E::MfaRequired => Description::new(
            StatusCode::FORBIDDEN,
            "mfa-required",
            "Multi-factor authentication required",
            "Administrators must turn on TOTP first: `POST /api/v1/users/me/mfa/totp`, then \
             `POST /api/v1/users/me/mfa/totp/confirm` with a code.",
        ),
        E::InvalidMfaCode => Description::new(
            StatusCode::UNAUTHORIZED,
            "invalid-mfa-code",
            "Invalid code",
            "The code is neither the authenticator's current code (unused) nor an unused \
             recovery code.",
        ),
        E::InvalidMfaToken => Description::new(
            StatusCode::UNAUTHORIZED,
            "invalid-mfa-token",
            "Invalid or expired MFA token",
            "The MFA token is unknown, expired, used, or had too many wrong codes: log in again \
             with the password.",
        ),
        E::InvalidLinkToken => Description::new(
            StatusCode::BAD_REQUEST,
            "invalid-link-token",
            "Invalid or expired link",
            "The link is unknown, expired or already used; ask for a new one.",
        ),
        E::NotFound => Description::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            NOT_FOUND_DETAIL,
        ),
        E::Conflict(detail) => {
            Description::new(StatusCode::CONFLICT, "conflict", "Conflict", *detail)
        }
        E::PreconditionFailed => Description::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "Precondition failed",
            "The resource has changed since you read it (`If-Match`); nothing was changed. \
             Read it again, then retry with its new `ETag`.",
        ),
        E::PayloadTooLarge { limit } => Description::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("The request body must not exceed {limit} bytes."),
        ),
        E::UriTooLong { limit } => Description::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "URI too long",
            format!("The path and query must not exceed {limit} bytes."),
        ),
        E::HeadersTooLarge { limit } => Description::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request header fields too large",
            format!("The request headers must not exceed {limit} bytes in all."),
        ),
        E::UnsupportedMediaType => Description::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as `Content-Type: application/json`.",
        ),
        E::RateLimited { retry_after } => Description::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!(
                "Rate limit exceeded; retry in {} seconds.",
                whole_seconds(*retry_after)
            ),
        )
        .retry_after(*retry_after),
        E::LoginLocked { retry_after } => Description::new(
            StatusCode::TOO_MANY_REQUESTS,
            "login-locked",
            "Login temporarily locked",
            format!(
                "Too many failed logins; logins are paused for {} seconds.",
                whole_seconds(*retry_after)
            ),
        )
        .retry_after(*retry_after),
        E::Overloaded { retry_after } => Description::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Service overloaded",
            format!(
                "The server is busy; retry in {} seconds.",
                whole_seconds(*retry_after)
            ),
        )
        .retry_after(*retry_after),
        E::Unavailable { retry_after } => Description::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            format!(
                "A service this request depends on cannot be reached; retry in {} seconds.",
                whole_seconds(*retry_after)
            ),
        )
        .retry_after(*retry_after),
        E::RequestTimeout => Description::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request timeout",
            "The request body was not received in time.",
        ),
        E::NotReady => Description::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Service not ready",
            "The database or Redis is not reachable, or the database is not migrated.",
        ),
        E::Internal(_) => Description::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal server error",
            INTERNAL_DETAIL,
        ),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        describe(self).status
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(error) = self {
            // `{:#}`: the whole cause chain on one line, without a backtrace.
            tracing::error!(error.chain = %format!("{error:#}"), "request failed with an internal error");
        }
        describe(self).into_response()
    }
}

/// Rounded up: a client told "0 seconds" retries at once and is refused again.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// A problem body for a bare status (unmatched route, wrong method, errors from middleware).
pub fn problem_for_status(status: StatusCode) -> HttpResponse {
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = match status {
        StatusCode::NOT_FOUND => NOT_FOUND_DETAIL,
        StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed on this resource.",
        s if s.is_server_error() => INTERNAL_DETAIL,
        _ => title,
    };
    let slug = title.to_ascii_lowercase().replace(' ', "-");
    Description::new(status, &slug, title, detail).into_response()
}

/// Gives every error response a problem+json body, whoever produced it (unmatched routes,
/// wrong methods, middleware errors). Headers such as `Allow` and `Retry-After` are kept; the
/// original body, which may be actix's or serde's plain text, is not.
pub async fn problem_details(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return Ok(response);
    }
    let (request, original) = response.into_parts();
    let mut problem = problem_for_status(status);
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(12)), 12);
        assert_eq!(whole_seconds(Duration::from_millis(12_001)), 13);
    }
}
