//! Load shedding: at most `MAX_IN_FLIGHT_REQUESTS` requests are handled at once. The next ones
//! wait up to `OVERLOAD_QUEUE_TIMEOUT_MS` for a slot (throttling: slower, not refused), then get
//! 503 with `Retry-After`. An overloaded server keeps answering quickly instead of queueing
//! without bound until every client times out.

use std::{sync::Arc, time::Duration};

use actix_web::{
    Error, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};
use tokio::sync::Semaphore;

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
    let Ok(Ok(_permit)) = permit else {
        tracing::warn!(target: "security", "request shed: too many requests in flight");
        let response = ApiError::Overloaded {
            retry_after: RETRY_AFTER,
        }
        .error_response();
        return Ok(req.into_response(response).map_into_right_body());
    };
    Ok(next.call(req).await?.map_into_left_body())
}
