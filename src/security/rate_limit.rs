//! Rate limits, all GCRA token buckets from governor:
//!
//! * every request but health probes, per client (`RATE_LIMIT_GLOBAL`),
//! * login, register and refresh, per client (`RATE_LIMIT_AUTH`),
//! * writes, per user whichever credential they present, or per client when anonymous
//!   (`RATE_LIMIT_WRITE`).
//!
//! (Password attempts per username are `login_throttle`'s.)
//!
//! All three are actix-governor middleware. Their key extractors are infallible (a failed
//! extraction would surface as an error outside the problem+json mapping) and read the
//! `ClientKey` resolved once by `telemetry::request_context` (trusted proxies only; IPv6 by
//! network).
//!
//! With several instances (`REDIS_URL`) the same limits are decided in Redis instead, by the
//! same algorithm with the same answers (`shared`); actix-governor then only keeps
//! the request flow and the headers.
//!
//! Every limited response is a 429 problem with `Retry-After`; every response that passed a
//! limiter carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` of the strictest limiter it
//! passed, and the same numbers in the IETF httpapi draft's fields
//! (`RateLimit-Policy: "write";q=30;w=60` and `RateLimit: "write";r=29;t=2`), the policy named
//! after the limiter (`keep_strictest_limit`).

use std::{hash::Hash, rc::Rc, time::Duration};

use actix_governor::{
    Governor, GovernorConfig, GovernorConfigBuilder, GovernorMiddleware, KeyExtractor,
    SimpleKeyExtractionError,
    governor::{
        NotUntil, RateLimiter,
        clock::{Clock, DefaultClock, QuantaInstant},
        middleware::{RateLimitingMiddleware, StateInformationMiddleware},
        state::keyed::ShrinkableKeyedStateStore,
    },
};
use actix_web::{
    Error, HttpMessage, HttpResponse, HttpResponseBuilder, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse, Transform},
    http::{
        Method, StatusCode,
        header::{HeaderName, HeaderValue, RETRY_AFTER},
    },
};
use futures_util::future::LocalBoxFuture;

use crate::{
    auth::{Principal, extractor},
    cluster::{RedisStore, gcra::SharedLimiter},
    config::{Quota, RateLimitSettings},
    error::ApiError,
    security::client_ip::ClientKey,
    web::problem::whole_seconds,
};

mod shared;

use shared::{Bucket, Decider, SharedDecision};

pub(crate) const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub(crate) const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const STATUS: HeaderName = HeaderName::from_static("ratelimit");

fn too_many_requests(negative: &NotUntil<QuantaInstant>) -> HttpResponse {
    rate_limited(
        negative.quota().burst_size().get(),
        negative.wait_time_from(DefaultClock::default().now()),
    )
}

/// The 429 of every limiter, in memory or in Redis.
pub(crate) fn rate_limited(burst: u32, retry_after: Duration) -> HttpResponse {
    let mut response = ApiError::RateLimited { retry_after }.error_response();
    let headers = response.headers_mut();
    headers.insert(LIMIT, burst.into());
    headers.insert(REMAINING, 0.into());
    headers.insert(RESET, whole_seconds(retry_after).into());
    response
}

/// Per client (`ClientKey`: IPv6 clients are their network, not their address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKeyExtractor;

impl KeyExtractor for ClientKeyExtractor {
    type Key = ClientKey;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<ClientKey, Self::KeyExtractionError> {
        Ok(ClientKey::of(req))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _: HttpResponseBuilder,
    ) -> HttpResponse {
        too_many_requests(negative)
    }
}

/// The global limit: per client, for every request except health probes, which an
/// orchestrator must always be able to make (they map to the one whitelisted key, `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    type Key = Option<ClientKey>;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<Option<ClientKey>, Self::KeyExtractionError> {
        if req.path().starts_with("/health/") {
            Ok(None)
        } else {
            Ok(Some(ClientKey::of(req)))
        }
    }

    fn whitelisted_keys(&self) -> Vec<Option<ClientKey>> {
        vec![None]
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _: HttpResponseBuilder,
    ) -> HttpResponse {
        too_many_requests(negative)
    }
}

/// Who a write is charged to: the authenticated user, whichever credential they present (an
/// access token or any of their API keys: more keys are not more budget), or else the client.
/// A credential that fails authentication is charged to the client too, so made-up keys
/// and tokens never open fresh buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKey {
    User(i64),
    Client(ClientKey),
}

/// Reads the principal that `RateLimit::per_principal` had authenticated before the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalKeyExtractor;

impl KeyExtractor for PrincipalKeyExtractor {
    type Key = PrincipalKey;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<PrincipalKey, Self::KeyExtractionError> {
        let user = req.extensions().get::<Principal>().map(|p| p.user_id);
        Ok(user.map_or_else(
            || PrincipalKey::Client(ClientKey::of(req)),
            PrincipalKey::User,
        ))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _: HttpResponseBuilder,
    ) -> HttpResponse {
        too_many_requests(negative)
    }
}

/// The requests a limiter counts; the others pass uncounted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counted {
    Every,
    Only(&'static [Method]),
}

impl Counted {
    pub(crate) fn includes(self, method: &Method) -> bool {
        match self {
            Self::Every => true,
            Self::Only(methods) => methods.contains(method),
        }
    }
}

const WRITES: Counted = Counted::Only(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE]);

/// The limiters, built once for all workers (each holds its shared state); every scope wraps
/// a clone of the one it needs.
#[derive(Clone)]
pub struct Limiters {
    pub global: RateLimit<GlobalKey>,
    pub auth: RateLimit<ClientKeyExtractor>,
    /// POST/PUT/PATCH/DELETE of the versioned API.
    pub write: RateLimit<PrincipalKeyExtractor>,
    /// The seed's routes, every method: voting there is a GET.
    pub legacy: RateLimit<PrincipalKeyExtractor>,
}

impl Limiters {
    /// In memory, or in Redis when `shared` (several instances).
    pub fn new(limits: &RateLimitSettings, shared: Option<&RedisStore>) -> Self {
        let shared =
            |name, quota| shared.map(|store| SharedLimiter::new(store.clone(), name, quota));
        Self {
            global: RateLimit::new("global", limits.global, GlobalKey, Counted::Every)
                .decided_by(shared("global", limits.global)),
            auth: RateLimit::new("auth", limits.auth, ClientKeyExtractor, Counted::Every)
                .decided_by(shared("auth", limits.auth)),
            write: RateLimit::per_principal("write", limits.write, WRITES)
                .decided_by(shared("write", limits.write)),
            legacy: RateLimit::per_principal("legacy", limits.write, Counted::Every)
                .decided_by(shared("legacy", limits.write)),
        }
    }

    pub fn retain_recent(&self) {
        forget_full_buckets(&self.global.config.limiter());
        forget_full_buckets(&self.auth.config.limiter());
        forget_full_buckets(&self.write.config.limiter());
        forget_full_buckets(&self.legacy.config.limiter());
    }

    /// Keys currently held by all limiters (for metrics and the memory benchmark).
    pub fn tracked_keys(&self) -> usize {
        self.global.config.limiter().len()
            + self.auth.config.limiter().len()
            + self.write.config.limiter().len()
            + self.legacy.config.limiter().len()
    }
}

/// Forgets keys whose bucket is full again: memory follows the clients active within the
/// last burst period, not every client ever seen.
fn forget_full_buckets<K, S, M>(limiter: &RateLimiter<K, S, DefaultClock, M>)
where
    K: Hash,
    S: ShrinkableKeyedStateStore<K>,
    M: RateLimitingMiddleware<QuantaInstant>,
{
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

/// The rate-limit state of one limiter as seen on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LimitStatus {
    policy: Policy,
    limit: u64,
    remaining: u64,
    reset_secs: u64,
}

/// A limiter as the draft's `RateLimit-Policy` names it: its quota of `limit` requests per
/// `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    name: &'static str,
    window_secs: u64,
}

impl LimitStatus {
    /// `"write";q=30;w=60`: the quota (the burst, as in `X-RateLimit-Limit`) and its window.
    fn policy_field(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.policy.name, self.limit, self.policy.window_secs
        )
    }

    /// `"write";r=29;t=2`: what is left, and the seconds until it is all back
    /// (`X-RateLimit-Remaining` and `-Reset`).
    fn status_field(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.policy.name, self.remaining, self.reset_secs
        )
    }
}

impl LimitStatus {
    fn stricter_than(&self, other: &Self) -> bool {
        (self.remaining, std::cmp::Reverse(self.reset_secs))
            < (other.remaining, std::cmp::Reverse(other.reset_secs))
    }
}

fn header_u64(headers: &actix_web::http::header::HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

/// One limiter as middleware: actix-governor's decision (and 429), plus the response headers.
///
/// actix-governor writes limit and remaining of *its* limiter, overwriting any inner one's;
/// `keep_strictest_limit` keeps the strictest seen so far (in the response's extensions), adds
/// `X-RateLimit-Reset` (seconds until the bucket is full again, or until a retry may succeed),
/// and drops actix-governor's non-standard extras.
///
/// The wrapped service's future is boxed before actix-governor sees it: in header mode it
/// needs that future to be `Unpin`, which the opaque types of `Scope::wrap` and
/// `Resource::wrap` cannot promise, so limiters could not otherwise be stacked.
#[derive(Clone)]
pub struct RateLimit<K: KeyExtractor> {
    policy: Policy,
    config: GovernorConfig<K, StateInformationMiddleware>,
    key: K,
    /// Several instances: the decision is Redis's, and `config` stays empty.
    shared: Option<SharedLimiter>,
    replenish: Duration,
    counted: Counted,
    /// Authenticate the caller of a counted request before the limiter takes its key.
    identify_caller: bool,
}

impl<K: KeyExtractor> RateLimit<K> {
    fn new(name: &'static str, quota: Quota, key: K, counted: Counted) -> Self {
        let replenish = quota.replenish_interval();
        let mut builder = GovernorConfigBuilder::default();
        builder.period(replenish).burst_size(quota.count);
        if let Counted::Only(methods) = counted {
            builder.methods(methods.to_vec());
        }
        let config = builder
            .key_extractor(key.clone())
            .use_headers()
            .finish()
            .expect("a validated quota has a positive count and period");
        Self {
            policy: Policy {
                name,
                window_secs: whole_seconds(quota.per),
            },
            config,
            key,
            shared: None,
            replenish,
            counted,
            identify_caller: false,
        }
    }

    fn decided_by(self, shared: Option<SharedLimiter>) -> Self {
        Self { shared, ..self }
    }
}

impl RateLimit<PrincipalKeyExtractor> {
    /// Charged to the caller's user: the credential is checked before the limiter decides
    /// (once per request: the handler's extractor reuses the outcome). Checking an API key
    /// reads the database, so this limiter sits inside the per-client global limit.
    fn per_principal(name: &'static str, quota: Quota, counted: Counted) -> Self {
        Self {
            identify_caller: true,
            ..Self::new(name, quota, PrincipalKeyExtractor, counted)
        }
    }
}

type Limited<S, K> = GovernorMiddleware<BoxedFuture<S>, K, StateInformationMiddleware>;

impl<S, B, K> Transform<S, ServiceRequest> for RateLimit<K>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
    K: KeyExtractor + 'static,
    K::Key: Bucket,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RateLimitService<Decider<Limited<S, K>, SharedDecision<S, K>>>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let service = Rc::new(service);
        let replenish = self.replenish;
        let policy = self.policy;
        let identify = self.identify_caller.then_some(self.counted);
        let decider = match &self.shared {
            Some(limiter) => Ok(Decider::Shared(SharedDecision::new(
                service,
                limiter.clone(),
                self.key.clone(),
                self.counted,
            ))),
            None => Err(Governor::new(&self.config).new_transform(BoxedFuture { service })),
        };
        Box::pin(async move {
            let decider = match decider {
                Ok(shared) => shared,
                Err(governed) => Decider::Local(governed.await?),
            };
            Ok(RateLimitService {
                inner: Rc::new(decider),
                policy,
                replenish,
                identify,
            })
        })
    }
}

/// Passes requests through, boxing the future (which makes it `Unpin`).
pub struct BoxedFuture<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for BoxedFuture<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        Box::pin(self.service.call(req))
    }
}

pub struct RateLimitService<S> {
    inner: Rc<S>,
    policy: Policy,
    replenish: Duration,
    /// The requests whose caller is authenticated before the limiter sees them.
    identify: Option<Counted>,
}

impl<S, B> Service<ServiceRequest> for RateLimitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, Error>>;

    actix_web::dev::forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let inner = Rc::clone(&self.inner);
        let replenish = self.replenish;
        let policy = self.policy;
        let identify = self
            .identify
            .is_some_and(|counted| counted.includes(req.method()));
        Box::pin(async move {
            if identify {
                extractor::identify(req.request()).await;
            }
            let mut response = inner.call(req).await?;
            keep_strictest_limit(&mut response, policy, replenish);
            Ok(response)
        })
    }
}

fn keep_strictest_limit<B>(response: &mut ServiceResponse<B>, policy: Policy, replenish: Duration) {
    let headers = response.headers_mut();
    headers.remove("x-ratelimit-whitelisted");
    headers.remove("x-ratelimit-after");
    let seen = match (header_u64(headers, &LIMIT), header_u64(headers, &REMAINING)) {
        (Some(limit), Some(remaining)) => {
            let reset_secs = if response.status() == StatusCode::TOO_MANY_REQUESTS {
                header_u64(response.headers(), &RETRY_AFTER).unwrap_or(1)
            } else {
                let spent = u32::try_from(limit.saturating_sub(remaining)).unwrap_or(u32::MAX);
                whole_seconds(replenish.saturating_mul(spent))
            };
            Some(LimitStatus {
                policy,
                limit,
                remaining,
                reset_secs,
            })
        }
        _ => None,
    };
    let earlier = response
        .response()
        .extensions()
        .get::<LimitStatus>()
        .copied();
    let strictest = match (seen, earlier) {
        (Some(seen), Some(earlier)) if earlier.stricter_than(&seen) => Some(earlier),
        (Some(seen), _) => Some(seen),
        (None, earlier) => earlier,
    };
    if let Some(status) = strictest {
        response.response_mut().extensions_mut().insert(status);
        let headers = response.headers_mut();
        headers.insert(LIMIT, HeaderValue::from(status.limit));
        headers.insert(REMAINING, HeaderValue::from(status.remaining));
        headers.insert(RESET, HeaderValue::from(status.reset_secs));
        for (name, value) in [
            (POLICY, status.policy_field()),
            (STATUS, status.status_field()),
        ] {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_with_less_remaining_is_the_stricter() {
        let policy = Policy {
            name: "test",
            window_secs: 60,
        };
        let loose = LimitStatus {
            policy,
            limit: 300,
            remaining: 299,
            reset_secs: 1,
        };
        let strict = LimitStatus {
            policy,
            limit: 5,
            remaining: 4,
            reset_secs: 12,
        };
        assert!(strict.stricter_than(&loose));
        assert!(!loose.stricter_than(&strict));
    }

    #[test]
    fn the_purge_forgets_clients_whose_bucket_is_full_again() {
        let limit = RateLimit::new(
            "test",
            Quota {
                count: 1000,
                per: Duration::from_secs(1),
            },
            ClientKeyExtractor,
            Counted::Every,
        );
        let limiter = limit.config.limiter();
        for i in 0..10_000u32 {
            let client = ClientKey::V4(i.into());
            assert!(limiter.check_key(&client).is_ok());
        }
        assert_eq!(limiter.len(), 10_000);
        // One request refills in 1 ms at 1000/s.
        std::thread::sleep(Duration::from_millis(20));
        forget_full_buckets(&limiter);
        assert_eq!(limiter.len(), 0);
    }
}
