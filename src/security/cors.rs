//! CORS from the allow-list in `CORS_ALLOWED_ORIGINS`.
//!
//! Credentials mode is never enabled: the API authenticates with headers (bearer tokens, API
//! keys), not cookies, so a browser never sends credentials on its own and cross-site request
//! forgery has nothing to ride on. A disallowed origin's preflight is refused without any
//! `Access-Control-Allow-*` header; its simple requests get no `Access-Control-Allow-Origin`,
//! so the browser withholds the response.

use std::time::Duration;

use actix_cors::Cors;
use actix_web::http::{Method, header};

/// Browsers may cache a preflight answer this long: short, so a tightened policy applies soon.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

pub fn cors(allowed_origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            header::LINK,
            header::HeaderName::from_static("deprecation"),
            header::HeaderName::from_static("sunset"),
            header::HeaderName::from_static("idempotency-replayed"),
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-ratelimit-limit"),
            header::HeaderName::from_static("x-ratelimit-remaining"),
            header::HeaderName::from_static("x-ratelimit-reset"),
            header::HeaderName::from_static("ratelimit-policy"),
            header::HeaderName::from_static("ratelimit"),
        ])
        .max_age(usize::try_from(PREFLIGHT_MAX_AGE.as_secs()).ok());
    for origin in allowed_origins {
        cors = if origin == "*" {
            // Development only (refused in production), and never with credentials.
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}
