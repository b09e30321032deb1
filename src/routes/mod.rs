//! HTTP handlers, one module per resource. Each module exposes `configure`; `startup` mounts
//! them and wraps them in the edge protection.

pub mod account_links;
pub mod admin;
pub mod auth;
pub mod films;
pub mod health;
pub mod legacy;
pub mod mfa;
pub mod my_votes;
pub mod static_files;
pub mod users;
pub mod well_known;

use actix_web::{HttpResponse, Route, guard, web};

use crate::error::ApiError;

/// A read: GET, and HEAD, which is the same answer without its body (RFC 9110 §9.3.2; the
/// HTTP/1 encoder leaves the body out of the answer to a HEAD request, keeping its length).
/// Only for handlers without side effects: `GET /` votes with `?like=`, so it is a plain
/// `web::get()`.
pub fn read() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Every unmatched path: the same problem body as any other 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
