//! The plain-HTTP listener when TLS is on (ASVS 5.0 4.1.2).
//!
//! * `/health/*` is answered as on HTTPS: load balancers probe over plain HTTP.
//! * Browser pages (`/static/…`, `/docs/…`) are redirected to HTTPS: a person typed the
//!   address, and the redirect is how they get to the secure page.
//! * Everything else is the API, and an API client that speaks plain HTTP is misconfigured:
//!   a redirect would hide that (most clients follow it, after sending their credential in
//!   clear on every call). It gets a 403 problem instead, and every credential it carried
//!   (bearer access token, API key, refresh token in a JSON body) is revoked if genuine, since
//!   anyone on the path may have read it (`auth::exposure`). The answer is the same whatever
//!   it carried.

use std::sync::Arc;

use actix_web::{
    Error, FromRequest, HttpRequest, HttpResponse, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header::{self, AUTHORIZATION, HeaderName},
    middleware::Next,
    web,
};
use serde::Deserialize;

use crate::{
    auth::{
        credentials::{API_KEY_HEADER, parse_api_key, parse_authorization},
        exposure::{self, Exposed},
    },
    error::ApiError,
    extract::Json,
    state::AppState,
    web::audit,
};

/// A client sends one credential; a few repeated headers are looked at too, no more, so one
/// request costs a bounded number of lookups.
const MAX_VALUES_PER_HEADER: usize = 3;

/// Paths a browser opens, which are redirected to HTTPS.
fn is_browser_page(path: &str) -> bool {
    path.starts_with("/static/") || path == "/docs" || path.starts_with("/docs/")
}

/// On the plain-HTTP listener (the HTTPS one passes everything through): see the module.
pub async fn refuse_plain_http(
    https_base: Arc<str>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let path = req.path();
    if req.app_config().secure() || path.starts_with("/health/") {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    if is_browser_page(path) {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let response = HttpResponse::MovedPermanently()
            .insert_header((header::LOCATION, format!("{https_base}{target}")))
            .finish();
        return Ok(req.into_response(response).map_into_right_body());
    }
    let (request, mut payload) = req.into_parts();
    revoke_carried_credentials(&request, &mut payload).await;
    let response = ApiError::HttpsRequired.error_response();
    Ok(ServiceResponse::new(request, response).map_into_right_body())
}

/// The body's `refresh_token`, if it is JSON and has one (`/auth/refresh`, `/auth/logout`).
#[derive(Deserialize)]
struct CarriedRefreshToken {
    refresh_token: Option<String>,
}

async fn revoke_carried_credentials(request: &HttpRequest, payload: &mut Payload) {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return;
    };
    let headers = request.headers();
    let values = |name: &HeaderName| {
        headers
            .get_all(name)
            .take(MAX_VALUES_PER_HEADER)
            .map(|value| value.as_bytes())
            .collect::<Vec<_>>()
    };
    let mut exposed: Vec<Exposed<'_>> = values(&AUTHORIZATION)
        .into_iter()
        .filter_map(|value| parse_authorization(value).ok())
        .map(Exposed::AccessToken)
        .collect();
    exposed.extend(
        values(&API_KEY_HEADER)
            .into_iter()
            .filter_map(|value| parse_api_key(value).ok())
            .map(Exposed::ApiKey),
    );
    // The body is read (within the usual size and time limits) only when it is JSON.
    let body = Json::<CarriedRefreshToken>::from_request(request, payload).await;
    let refresh_token = body.ok().and_then(|Json(body)| body.refresh_token);
    exposed.extend(refresh_token.as_deref().map(Exposed::RefreshToken));
    let audit = audit::context_of(request);
    for credential in exposed {
        if let Err(error) = exposure::revoke(state, credential, &audit).await {
            // The answer stays the same: it must not tell a genuine credential from another.
            tracing::error!(error = ?error, "a credential sent over plain HTTP was not revoked");
        }
    }
}
