//! Load shedding: at most `MAX_IN_FLIGHT_REQUESTS` requests are handled at once. The next ones
//! wait up to `OVERLOAD_QUEUE_TIMEOUT_MS` for a slot (throttling: slower, not refused), then get
//! 503 with `Retry-After`. An overloaded server keeps answering quickly instead of queueing
//! without bound until every client times out.
//!
//! A slot is for a request the server is working on. A request that parks on a slower queue
//! with its own bound (the password hasher's, `PASSWORD_HASH_QUEUE`) gives its slot back
//! first (`InFlightSlot::release`): otherwise a few hundred logins waiting for argon2 hold
//! every slot, and reads, which need a few milliseconds, get 503.

use std::{cell::Cell, convert::Infallible, future::Ready, rc::Rc, sync::Arc, time::Duration};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    middleware::Next,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct InFlightLimit {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl InFlightLimit {
    pub fn new(max_in_flight: usize, queue_timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            queue_timeout,
        }
    }
}

/// The request's in-flight slot, shared between the middleware and the handler (an
/// extractor). Empty for requests that never held one (health probes).
#[derive(Clone, Default)]
pub struct InFlightSlot(Rc<Cell<Option<OwnedSemaphorePermit>>>);

impl InFlightSlot {
    /// Gives the slot back for the rest of the request. Only for a request about to wait on a
    /// queue that has its own bound, which then stands in for this one.
    pub fn release(&self) {
        self.0.take();
    }
}

impl FromRequest for InFlightSlot {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(req
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or_default()))
    }
}

pub async fn limit_in_flight(
    limit: InFlightLimit,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    // Health probes must answer even (especially) when the server is saturated.
    if req.path().starts_with("/health/") {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let permit = tokio::time::timeout(limit.queue_timeout, limit.permits.acquire_owned()).await;
    let Ok(Ok(permit)) = permit else {
        tracing::warn!(target: "security", "request shed: too many requests in flight");
        let response = ApiError::Overloaded {
            retry_after: RETRY_AFTER,
        }
        .error_response();
        return Ok(req.into_response(response).map_into_right_body());
    };
    let slot = InFlightSlot(Rc::new(Cell::new(Some(permit))));
    req.extensions_mut().insert(slot.clone());
    let response = next.call(req).await;
    // Now, not whenever actix drops the request (and its extensions) after the response.
    slot.release();
    Ok(response?.map_into_left_body())
}
