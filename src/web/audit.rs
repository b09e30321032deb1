//! The audit trail's side of a request: the `AuditContext` a handler takes as an argument, and
//! the middleware that records every 401, 403 and 429 nobody recorded more specifically.

use std::sync::Arc;

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::Next,
    web,
};

use crate::{
    audit::{Admission, AuditAction, AuditContext, AuditTarget, Outcome, RequestTrail},
    security::client_ip::{ClientIp, ClientKey},
    state::AppState,
    telemetry::{self, RequestId},
};

/// The request's trail, made by whoever asks first (the audit context, or authentication
/// naming the actor).
pub fn trail_of(request: &HttpRequest) -> Arc<RequestTrail> {
    request
        .extensions_mut()
        .get_or_insert_with(|| Arc::new(RequestTrail::default()))
        .clone()
}

pub fn context_of(request: &HttpRequest) -> AuditContext {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned());
    AuditContext::for_request(request_id, ClientIp::of(request), trail_of(request))
}

impl FromRequest for AuditContext {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(context_of(req)))
    }
}

/// Every 401, 403 and 429 becomes an audit event, unless its handler already recorded a more
/// specific one (a failed login, say): in full if it is the first of its client's window,
/// else counted into the window's summary, and then its request line is logged at DEBUG
/// only (the summary speaks for it).
pub async fn audit_denials(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let response = next.call(req).await?;
    let action = match response.status() {
        StatusCode::UNAUTHORIZED => AuditAction::Unauthenticated,
        StatusCode::FORBIDDEN => AuditAction::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => AuditAction::RateLimited,
        _ => return Ok(response),
    };
    let request = response.request();
    if !trail_of(request).has_event()
        && let Some(state) = request.app_data::<web::Data<AppState>>()
    {
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "<unmatched>".to_owned());
        let event =
            context_of(request)
                .event(action, Outcome::Denied)
                .target(AuditTarget::Endpoint {
                    method: request.method().to_string(),
                    route,
                });
        if state.audit.submit_denial(ClientKey::of(request), event) == Admission::Counted {
            telemetry::log_request_at_debug(request);
        }
    }
    Ok(response)
}
