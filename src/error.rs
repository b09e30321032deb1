//! The one error type of the API and its one mapping to HTTP: `application/problem+json`
//! (RFC 9457) with the request id, so a user can quote it and an operator can find the log line.
//!
//! Client-facing text is fixed per variant or built from our own words; nothing from serde,
//! validator, sqlx or a panic reaches a response. Internal errors are logged here, once, with
//! their whole cause chain.

use std::{fmt, time::Duration};

use actix_web::{
    Error, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{StatusCode, header},
    middleware::Next,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{auth::password::HashError, telemetry::current_request_id};

pub const PROBLEM_JSON: &str = "application/problem+json";
const NOT_FOUND_DETAIL: &str = "The requested resource does not exist.";
const INTERNAL_DETAIL: &str =
    "Something went wrong on our side; quote the request_id if you report it.";

/// One invalid field of a request, in our words (never the submitted value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(thiserror::Error)]
pub enum ApiError {
    /// Well-formed request whose fields break the rules: 422 with every failing field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Malformed request (syntax, unknown fields, bad query): 400.
    #[error("bad request: {detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// Missing, malformed, expired or revoked credentials: 401 with one fixed body.
    #[error("unauthenticated")]
    Unauthenticated,
    /// Login failure: same status, body and timing for unknown user and wrong password.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("URI too long")]
    UriTooLong { limit: usize },
    #[error("request headers too large")]
    HeadersTooLarge { limit: usize },
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    /// Logins for this username or from this IP are paused after suspicious failures.
    #[error("login locked")]
    LoginLocked { retry_after: Duration },
    #[error("overloaded")]
    Overloaded { retry_after: Duration },
    #[error("request timeout")]
    RequestTimeout,
    /// Readiness probe failed: the database cannot serve.
    #[error("not ready")]
    NotReady,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn slug_title_detail(&self) -> (&'static str, &'static str, String) {
        match self {
            Self::Validation(_) => (
                "validation-error",
                "Your request is not valid",
                "One or more fields are invalid; see `errors`.".into(),
            ),
            Self::BadRequest { detail, .. } => ("bad-request", "Bad request", detail.clone()),
            Self::Unauthenticated => (
                "unauthenticated",
                "Authentication required",
                "Send a valid bearer token in `Authorization` or an API key in `X-API-Key`.".into(),
            ),
            Self::InvalidCredentials => (
                "invalid-credentials",
                "Invalid credentials",
                "The username or password is incorrect.".into(),
            ),
            Self::Forbidden => (
                "forbidden",
                "Forbidden",
                "You are not allowed to perform this action.".into(),
            ),
            Self::NotFound => ("not-found", "Not found", NOT_FOUND_DETAIL.into()),
            Self::Conflict(detail) => ("conflict", "Conflict", (*detail).into()),
            Self::PayloadTooLarge { limit } => (
                "payload-too-large",
                "Payload too large",
                format!("The request body must not exceed {limit} bytes."),
            ),
            Self::UriTooLong { limit } => (
                "uri-too-long",
                "URI too long",
                format!("The path and query must not exceed {limit} bytes."),
            ),
            Self::HeadersTooLarge { limit } => (
                "headers-too-large",
                "Request header fields too large",
                format!("The request headers must not exceed {limit} bytes in all."),
            ),
            Self::UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                "Send the body as `Content-Type: application/json`.".into(),
            ),
            Self::RateLimited { retry_after } => (
                "rate-limited",
                "Too many requests",
                format!(
                    "Rate limit exceeded; retry in {} seconds.",
                    whole_seconds(*retry_after)
                ),
            ),
            Self::LoginLocked { retry_after } => (
                "login-locked",
                "Login temporarily locked",
                format!(
                    "Too many failed logins; logins are paused for {} seconds.",
                    whole_seconds(*retry_after)
                ),
            ),
            Self::Overloaded { retry_after } => (
                "overloaded",
                "Service overloaded",
                format!(
                    "The server is busy; retry in {} seconds.",
                    whole_seconds(*retry_after)
                ),
            ),
            Self::RequestTimeout => (
                "request-timeout",
                "Request timeout",
                "The request body was not received in time.".into(),
            ),
            Self::NotReady => (
                "not-ready",
                "Service not ready",
                "The database is not reachable or not migrated.".into(),
            ),
            Self::Internal(_) => (
                "internal-error",
                "Internal server error",
                INTERNAL_DETAIL.into(),
            ),
        }
    }

    fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Validation(errors) | Self::BadRequest { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Rounded up: a client told "0 seconds" retries at once and is refused again.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internal(e) => write!(f, "Internal({e:?})"),
            other => write!(f, "{other}"),
        }
    }
}

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
    respond(status, &slug, title, detail.to_owned(), &[])
}

fn respond(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: String,
    errors: &[FieldError],
) -> HttpResponse {
    let problem = Problem {
        kind: format!("/problems/{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        request_id: current_request_id(),
        errors: errors.to_vec(),
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .body(serde_json::to_string(&problem).unwrap_or_default())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited { .. } | Self::LoginLocked { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(error) = self {
            // `{:#}`: the whole cause chain on one line, without a backtrace.
            tracing::error!(error.chain = %format!("{error:#}"), "request failed with an internal error");
        }
        let (slug, title, detail) = self.slug_title_detail();
        let mut response = respond(self.status_code(), slug, title, detail, self.field_errors());
        let headers = response.headers_mut();
        match self {
            Self::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"filmvault\""),
                );
            }
            Self::RateLimited { retry_after }
            | Self::LoginLocked { retry_after }
            | Self::Overloaded { retry_after } => {
                headers.insert(header::RETRY_AFTER, whole_seconds(*retry_after).into());
            }
            _ => {}
        }
        response
    }
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

/// SQLite reports constraint names only in text; the unique-violation code is reliable.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A full hash queue is load shedding like a full server: 503 for the requests that hash
/// (login, registration, password change), never for anything else. Places free up as hashes
/// finish, about 12 ms each, so one second is a fair time to wait.
impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::QueueFull => Self::Overloaded {
                retry_after: Duration::from_secs(1),
            },
            HashError::Failed(error) => Self::Internal(error),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(error).context("database query failed"))
    }
}

impl From<validator::ValidationErrors> for ApiError {
    fn from(errors: validator::ValidationErrors) -> Self {
        Self::Validation(crate::extract::field_errors(&errors))
    }
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
