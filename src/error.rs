//! The one error type of the API. Its mapping to HTTP (status, problem+json body, headers) is
//! `web::problem`; this module knows no HTTP framework, so the domain can return it.
//!
//! Client-facing text is fixed per variant or built from our own words; nothing from serde,
//! validator, sqlx or a panic reaches a response. Field errors are made here, in one place,
//! whether they come from validator or from a domain type's `parse`.

use std::{fmt, time::Duration};

use serde::Serialize;
use utoipa::ToSchema;
use validator::{ValidationErrors, ValidationErrorsKind};

use crate::auth::password::HashError;

/// One invalid field of a request, in our words (never the submitted value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    #[schema(max_length = 128)]
    pub field: String,
    #[schema(max_length = 256)]
    pub message: String,
    /// The rule broken, for programs (e.g. `length`, `common`, `contains_username`,
    /// `guessable`), when the rule has a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64, pattern = "^[a-z_]+$")]
    pub code: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            code: None,
        }
    }

    /// The error validator (or a domain type's `parse`) reported, in our words, with its code.
    fn of(field: impl Into<String>, error: &validator::ValidationError) -> Self {
        Self {
            code: Some(error.code.to_string()),
            ..Self::new(field, describe(error))
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
    /// Step-up (`auth::StepUp`): the action needs a login at most `max_age` old, and the
    /// caller's session is older. 401 with RFC 9470's challenge: log in again, then retry.
    #[error("reauthentication required")]
    ReauthenticationRequired { max_age: Duration },
    /// The password was right, but the account's email is not verified yet and
    /// `REQUIRE_EMAIL_VERIFICATION` is on: 403, told only after a correct password.
    #[error("email not verified")]
    EmailNotVerified,
    /// An administrator without confirmed MFA on an admin route, with `REQUIRE_ADMIN_MFA`: 403
    /// until they enrol (the enrolment routes stay open to them).
    #[error("MFA required")]
    MfaRequired,
    /// A second-factor code that is neither the current TOTP code (unused) nor an unused
    /// recovery code.
    #[error("invalid MFA code")]
    InvalidMfaCode,
    /// An `mfa_token` that is unknown, expired, used or killed by wrong codes: log in again.
    #[error("invalid MFA token")]
    InvalidMfaToken,
    /// An API request over plain HTTP while TLS is on: 403, and any credential it carried is
    /// revoked (`security::plain_http`).
    #[error("HTTPS required")]
    HttpsRequired,
    /// A mailed token (verification, reset) that is unknown, expired, used, superseded or
    /// no longer bound to the account: one answer for all, so none can be told apart.
    #[error("invalid or expired link")]
    InvalidLinkToken,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// An `Idempotency-Key` already used by this caller for a different request: 422.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` has not answered yet: 409.
    #[error("idempotency key in flight")]
    IdempotencyKeyInFlight,
    /// `If-Match` named none of the resource's current entity tags: 412, nothing changed.
    #[error("precondition failed")]
    PreconditionFailed,
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
    /// A store the request depends on (Redis, the database) cannot be reached: refused
    /// rather than let through unchecked, until it is back.
    #[error("unavailable")]
    Unavailable { retry_after: Duration },
    #[error("request timeout")]
    RequestTimeout,
    /// Readiness probe failed: the database (or Redis) cannot serve.
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
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internal(e) => write!(f, "Internal({e:?})"),
            other => write!(f, "{other}"),
        }
    }
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

/// Redis and PostgreSQL are usually back within seconds (a restart, a failover); every
/// request until then is refused the same way.
const OUTAGE_RETRY_AFTER: Duration = Duration::from_secs(2);

impl From<crate::cluster::Unavailable> for ApiError {
    fn from(error: crate::cluster::Unavailable) -> Self {
        tracing::warn!(%error, "refused: Redis cannot be asked");
        Self::Unavailable {
            retry_after: OUTAGE_RETRY_AFTER,
        }
    }
}

/// A database that cannot be reached is an outage, not a bug: 503 with `Retry-After`, and
/// the cause in the log only. Any other database error is internal.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unreachable(&error) {
            tracing::warn!(%error, "refused: the database cannot be reached");
            return Self::Unavailable {
                retry_after: OUTAGE_RETRY_AFTER,
            };
        }
        Self::Internal(anyhow::Error::new(error).context("database query failed"))
    }
}

/// Names the step of a multi-step operation that failed, in the log of its 500: "database
/// query failed" alone does not say which of a transaction's queries it was. The client's
/// answer stays the fixed 500 body; an error that is not internal (a full hash queue's 503,
/// a 409) passes through unchanged.
///
/// ```ignore
/// refresh_families::revoke_family(&mut tx, session, reason).await.step("revoke the session's tokens")?;
/// ```
pub trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, ApiError>;
}

impl<T, E: Into<ApiError>> Step<T> for Result<T, E> {
    fn step(self, step: &'static str) -> Result<T, ApiError> {
        self.map_err(|error| match error.into() {
            ApiError::Internal(error) => ApiError::Internal(error.context(step)),
            other => other,
        })
    }
}

impl From<validator::ValidationErrors> for ApiError {
    fn from(errors: validator::ValidationErrors) -> Self {
        Self::Validation(field_errors(&errors))
    }
}

/// validator's errors in our words. Its `params` carry the submitted value (`value`), which is
/// never copied: only our own bounds (`min`, `max`) are.
fn field_errors(errors: &ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    collect(errors, "", &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn collect(errors: &ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                out.extend(list.iter().map(|e| FieldError::of(&path, e)));
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

/// Turns a domain `parse` failure into the 422 for `field`.
pub trait ForField<T> {
    fn for_field(self, field: &str) -> Result<T, ApiError>;
}

impl<T> ForField<T> for Result<T, validator::ValidationError> {
    fn for_field(self, field: &str) -> Result<T, ApiError> {
        self.map_err(|error| ApiError::Validation(vec![FieldError::of(field, &error)]))
    }
}

fn describe(error: &validator::ValidationError) -> String {
    if let Some(message) = &error.message {
        return message.to_string();
    }
    let bound = |name: &str| error.params.get(name).map(ToString::to_string);
    match (error.code.as_ref(), bound("min"), bound("max")) {
        ("length", Some(min), Some(max)) => format!("must be {min} to {max} characters long"),
        ("length", Some(min), None) => format!("must be at least {min} characters long"),
        ("length", None, Some(max)) => format!("must be at most {max} characters long"),
        ("range", Some(min), Some(max)) => format!("must be between {min} and {max}"),
        ("email", ..) => "must be a valid email address".into(),
        _ => "is invalid".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_is_named_in_the_internal_error_chain() {
        let failed: Result<(), sqlx::Error> = Err(sqlx::Error::RowNotFound);
        let Err(ApiError::Internal(error)) = failed.step("revoke the session's refresh tokens")
        else {
            panic!("a database error is internal");
        };
        let chain = format!("{error:#}");
        assert!(
            chain.starts_with("revoke the session's refresh tokens: database query failed: "),
            "{chain}"
        );
    }

    #[test]
    fn a_database_that_cannot_be_reached_is_unavailable_not_internal() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::Io(refused)] {
            assert!(matches!(
                Err::<(), _>(error).step("read the film"),
                Err(ApiError::Unavailable { .. })
            ));
        }
    }

    #[test]
    fn an_error_that_is_not_internal_keeps_its_meaning() {
        let full: Result<(), HashError> = Err(HashError::QueueFull);
        assert!(matches!(
            full.step("hash the new password"),
            Err(ApiError::Overloaded { .. })
        ));
        let conflict: Result<(), ApiError> = Err(ApiError::Conflict("taken"));
        assert!(matches!(
            conflict.step("insert the user"),
            Err(ApiError::Conflict("taken"))
        ));
    }
}
