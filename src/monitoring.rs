//! Prometheus metrics: requests by route and status, latency, denials (401/403/429), database
//! pool usage, rate-limiter size and dropped audit events, and which instance this is.
//!
//! Served as `GET /metrics` to administrators, and, with `METRICS_ADDR`, on a separate
//! loopback-only listener without authentication for a local scraper.

use std::{
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::Method,
    middleware::Next,
    web,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{
    auth::{AdminRead, Authenticated},
    security::rate_limit::Limiters,
    state::AppState,
};

const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often the latency samples recorded since the last scrape are folded into the
/// histograms' buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once, with the thread that keeps it, and returns its
/// handle.
///
/// The recorder keeps every latency sample until something folds them into the buckets: a
/// scrape does, and so does `run_upkeep`. Without it, a server nobody scrapes held 8 bytes
/// per request for ever (heaptrack: 4.7 MiB of them at the benchmark's peak).
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".to_owned()),
                    &LATENCY_BUCKETS,
                )
                .expect("the latency buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            keep_up(handle.clone());
            handle
        })
        .clone()
}

fn keep_up(handle: PrometheusHandle) {
    let started = thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::error!(%error, "no metrics upkeep thread: latency samples pile up until scraped");
    }
}

/// Names this instance: `filmvault_instance_info{instance_id="…"} 1`.
///
/// An info gauge rather than an `instance_id` label on every series, as Prometheus's own
/// exporters do (`node_uname_info`, `*_build_info`): the scraper already tells the series of
/// each target apart by its `instance` label, a constant label would repeat the same value on
/// every sample, and a query that wants the id joins it in (`… * on(instance) group_left(instance_id)
/// filmvault_instance_info`). And the recorder is one per process, shared by every
/// `Application` built in it (the test suite builds many), so it cannot hold one id anyway.
pub fn describe_instance(instance_id: &str) {
    ::metrics::gauge!("filmvault_instance_info", "instance_id" => instance_id.to_owned()).set(1.0);
}

/// Labels stay bounded: the route *pattern* (not the path), and only the methods we serve.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub async fn record_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let method = method_label(req.method());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let started = Instant::now();
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    ::metrics::counter!(
        "http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    ::metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    if matches!(status, 401 | 403 | 429) {
        ::metrics::counter!("http_denied_total", "status" => status.to_string()).increment(1);
    }
    Ok(response)
}

fn render(state: &AppState, limiters: &Limiters) -> HttpResponse {
    for pool in state.db.pools() {
        let (name, idle, open) = (pool.name, pool.idle as f64, f64::from(pool.open));
        ::metrics::gauge!("db_pool_connections", "pool" => name, "state" => "idle").set(idle);
        ::metrics::gauge!("db_pool_connections", "pool" => name, "state" => "in_use")
            .set(open - idle);
    }
    let keys = limiters.tracked_keys() + state.login_throttle.tracked_keys();
    ::metrics::gauge!("rate_limiter_keys").set(keys as f64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle().render())
}

/// The Prometheus text exposition, as the API document describes it: one series per route
/// pattern, status class and limiter, so its size is bounded by the routes, not the traffic.
pub struct MetricsText;

impl utoipa::PartialSchema for MetricsText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_METRICS_TEXT_BYTES))
            .into()
    }
}

impl utoipa::ToSchema for MetricsText {}

/// Generous: a scrape is a few tens of KiB.
const MAX_METRICS_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// Prometheus metrics (text exposition format), for administrators.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "Prometheus text format", body = MetricsText,
        content_type = "text/plain")))]
pub async fn metrics_for_admins(
    _admin: Authenticated<AdminRead>,
    state: web::Data<AppState>,
    limiters: web::Data<Limiters>,
) -> HttpResponse {
    render(&state, &limiters)
}

/// `/metrics` on the internal `METRICS_ADDR` listener: loopback only, or any address behind
/// mutual TLS (`INTERNAL_CLIENT_CA_PATH`).
pub async fn metrics_on_internal_listener(
    state: web::Data<AppState>,
    limiters: web::Data<Limiters>,
) -> HttpResponse {
    render(&state, &limiters)
}
