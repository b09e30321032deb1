//! Size limits on what a request may carry before any handler runs. Bodies are limited by the
//! JSON extractor (`MAX_JSON_BODY_BYTES`) and lists by the pagination caps; this module limits
//! the URL and the headers. (actix itself closes a connection whose request head exceeds
//! 128 KiB or 96 headers; our limits are tighter and answer with a problem body.)

use actix_web::{
    Error, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};

use crate::error::ApiError;

/// Longer than any URL this API produces or needs (the longest query is a 100-character
/// search with paging); 414 beyond.
pub const MAX_URI_BYTES: usize = 2048;
/// All header names and values together; a bearer token is under 1 KiB. 431 beyond.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

pub async fn limit_request_head(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let uri_bytes = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let refusal = if uri_bytes > MAX_URI_BYTES {
        Some(ApiError::UriTooLong {
            limit: MAX_URI_BYTES,
        })
    } else if header_bytes > MAX_HEADER_BYTES {
        Some(ApiError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
        })
    } else {
        None
    };
    if let Some(refusal) = refusal {
        let response = refusal.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
