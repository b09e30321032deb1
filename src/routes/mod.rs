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

use actix_web::HttpResponse;

use crate::error::ApiError;

/// Every unmatched path: the same problem body as any other 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
