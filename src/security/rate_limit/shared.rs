//! A rate limit decided in Redis (several instances, `REDIS_URL`): the same key extractors,
//! counted requests, whitelist, headers and 429 as the actix-governor middleware it stands in
//! for, with the bucket in `cluster::gcra`. When Redis cannot be asked the request is refused
//! with 503 (`ApiError::Unavailable`): a limit that cannot be checked is not passed.

use std::rc::Rc;

use actix_governor::KeyExtractor;
use actix_web::{
    Error, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse},
    http::header::HeaderValue,
};
use futures_util::future::LocalBoxFuture;

use super::{Counted, LIMIT, PrincipalKey, REMAINING, rate_limited};
use crate::{
    cluster::{
        RedisStore,
        gcra::{Decision, SharedLimiter},
    },
    error::ApiError,
    security::client_ip::ClientKey,
};

/// How a limiter key names its bucket in Redis: a client by its pseudonym, never its address.
pub trait Bucket {
    fn bucket(&self, store: &RedisStore) -> String;
}

impl Bucket for ClientKey {
    fn bucket(&self, store: &RedisStore) -> String {
        format!("client:{}", store.client_pseudonym(*self))
    }
}

/// The global limit's key: `None` (health probes) is whitelisted and never reaches Redis.
impl Bucket for Option<ClientKey> {
    fn bucket(&self, store: &RedisStore) -> String {
        self.as_ref()
            .map_or_else(|| "exempt".to_owned(), |client| client.bucket(store))
    }
}

impl Bucket for PrincipalKey {
    fn bucket(&self, store: &RedisStore) -> String {
        match self {
            Self::User(id) => format!("user:{id}"),
            Self::Client(client) => client.bucket(store),
        }
    }
}

/// Who decides: actix-governor in memory, or Redis.
pub enum Decider<L, R> {
    Local(L),
    Shared(R),
}

impl<L, R, B> Service<ServiceRequest> for Decider<L, R>
where
    L: Service<ServiceRequest, Response = ServiceResponse<EitherBody<B>>, Error = Error>,
    L::Future: 'static,
    R: Service<
            ServiceRequest,
            Response = ServiceResponse<EitherBody<B>>,
            Error = Error,
            Future = LocalBoxFuture<'static, Result<ServiceResponse<EitherBody<B>>, Error>>,
        >,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Error>>;

    fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match self {
            Self::Local(local) => local.poll_ready(cx),
            Self::Shared(shared) => shared.poll_ready(cx),
        }
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match self {
            Self::Local(local) => Box::pin(local.call(req)),
            Self::Shared(shared) => shared.call(req),
        }
    }
}

/// The Redis decision as middleware around `service`.
pub struct SharedDecision<S, K> {
    service: Rc<S>,
    limiter: Rc<SharedLimiter>,
    key: K,
    counted: Counted,
}

impl<S, K> SharedDecision<S, K> {
    pub(crate) fn new(service: Rc<S>, limiter: SharedLimiter, key: K, counted: Counted) -> Self {
        Self {
            service,
            limiter: Rc::new(limiter),
            key,
            counted,
        }
    }
}

impl<S, B, K> Service<ServiceRequest> for SharedDecision<S, K>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
    K: KeyExtractor,
    K::Key: Bucket,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let limiter = Rc::clone(&self.limiter);
        let bucket = if self.counted.includes(req.method()) {
            match self.key.extract(&req) {
                Ok(key) if self.key.whitelisted_keys().contains(&key) => None,
                Ok(key) => Some(key.bucket(limiter.store())),
                Err(error) => return Box::pin(async move { Err(error.into()) }),
            }
        } else {
            None
        };
        Box::pin(async move {
            let Some(bucket) = bucket else {
                return Ok(service.call(req).await?.map_into_left_body());
            };
            let refusal = match limiter.check(&bucket).await {
                Ok(Decision::Allowed { remaining }) => {
                    let mut response = service.call(req).await?;
                    let headers = response.headers_mut();
                    headers.insert(LIMIT, HeaderValue::from(limiter.burst()));
                    headers.insert(REMAINING, HeaderValue::from(remaining));
                    return Ok(response.map_into_left_body());
                }
                Ok(Decision::Limited { retry_after }) => rate_limited(limiter.burst(), retry_after),
                Err(unavailable) => ApiError::from(unavailable).error_response(),
            };
            Ok(req.into_response(refusal).map_into_right_body())
        })
    }
}
