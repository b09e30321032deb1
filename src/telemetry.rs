//! Logging: the subscriber (pretty in development, JSON in production), the per-request
//! context (request id, client IP, start time) and the root span of every request.
//!
//! What a request line holds is decided here, field by field: method, route pattern, status,
//! latency, client IP, user id, request id, and the instance that answered (`INSTANCE_ID`), so
//! the lines of several instances merged in one place still say where each came from. Headers, query strings and bodies are never
//! recorded, which is how tokens, API keys and passwords stay out of the logs.

use std::{sync::Arc, time::Instant};

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use anyhow::Context;
use tracing::{Span, Subscriber};
use tracing_actix_web::{RootSpanBuilder, TracingLogger};
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::{
    EnvFilter, Layer, Registry, fmt::MakeWriter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::{
    auth::Principal,
    config::LogFormat,
    security::client_ip::{ClientIp, ClientResolver},
    state::AppState,
};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
pub const MAX_REQUEST_ID_LEN: usize = 64;

tokio::task_local! {
    /// Lets `ApiError` put the request id in every problem body without threading it through
    /// every handler.
    static REQUEST_ID: RequestId;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A client's id is kept only if it is short and made of safe characters, so it cannot
    /// forge log lines or smuggle markup into a response.
    fn from_header(value: &HeaderValue) -> Option<Self> {
        let value = value.to_str().ok()?;
        let safe = !value.is_empty()
            && value.len() <= MAX_REQUEST_ID_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        safe.then(|| Self(value.into()))
    }

    fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.as_str().to_owned()).ok()
}

#[derive(Clone, Copy)]
struct RequestStart(Instant);

/// A request whose line is logged at DEBUG only: see `log_request_at_debug`.
#[derive(Clone, Copy)]
struct QuietRequest;

/// The outermost middleware: gives the request its id, client (address and key) and start
/// time, and runs the rest of the stack with the id in scope.
///
/// No middleware here holds on to a clone of the `HttpRequest` while the inner service runs:
/// actix's router needs the only reference to record path parameters, and panics otherwise.
/// Everything inside answers errors as responses (`Ok`), so there is nothing to convert.
pub async fn request_context(
    clients: Arc<ClientResolver>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(RequestId::from_header)
        .unwrap_or_else(RequestId::generate);
    let (client_ip, client_key) = clients.resolve(&req);
    {
        let mut extensions = req.extensions_mut();
        extensions.insert(request_id.clone());
        extensions.insert(client_ip);
        extensions.insert(client_key);
        extensions.insert(RequestStart(Instant::now()));
    }
    // The call happens inside the scope too: middleware may answer synchronously in `call`.
    let mut response = REQUEST_ID
        .scope(request_id.clone(), async move { next.call(req).await })
        .await?;
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

pub fn request_logger() -> TracingLogger<RequestSpan> {
    TracingLogger::new()
}

/// Root span of every request: one `request completed` event per request closes it.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let extensions = request.extensions();
        let request_id = extensions
            .get::<RequestId>()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        let client_ip = ClientIp::of(request);
        let state = request.app_data::<actix_web::web::Data<AppState>>();
        tracing::info_span!(
            "request",
            instance_id = state.map(|state| tracing::field::display(&state.settings.instance_id)),
            method = %request.method(),
            route = %request.match_pattern().unwrap_or_else(|| "<unmatched>".to_owned()),
            client_ip = client_ip.map(tracing::field::display),
            request_id = %request_id,
        )
    }

    /// Status, latency and user go on the line's event, not into the span: a span's fields
    /// are kept as formatted JSON, and each `record` on them parses and re-writes it.
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let _entered = span.enter();
        let Ok(response) = outcome else {
            tracing::error!("request failed before a response was built");
            return;
        };
        let status = response.status();
        let extensions = response.request().extensions();
        let latency_ms = extensions
            .get::<RequestStart>()
            .map(|start| start.0.elapsed().as_micros() as f64 / 1000.0);
        let user_id = extensions
            .get::<Principal>()
            .map(|principal| principal.user_id);
        let quiet = extensions.contains::<QuietRequest>();
        macro_rules! request_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    status = status.as_u16(),
                    latency_ms,
                    user_id,
                    "request completed"
                )
            };
        }
        if status.is_server_error() {
            request_line!(tracing::Level::ERROR);
        } else if quiet {
            request_line!(tracing::Level::DEBUG);
        } else if status.is_client_error() {
            request_line!(tracing::Level::WARN);
        } else {
            request_line!(tracing::Level::INFO);
        }
    }
}

/// Logs the request's line at DEBUG: for a repeated denial, which the audit trail counts into
/// a summary that is logged instead, so a flood does not write a line per request.
pub fn log_request_at_debug(request: &actix_web::HttpRequest) {
    request.extensions_mut().insert(QuietRequest);
}

/// A subscriber that writes to `writer`, filtered by `filter` (RUST_LOG syntax).
pub fn subscriber<W>(
    filter: &str,
    format: LogFormat,
    writer: W,
) -> Result<impl Subscriber + Send + Sync, tracing_subscriber::filter::ParseError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)?;
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .boxed(),
    };
    Ok(Registry::default().with(filter).with(layer))
}

/// How many lines may wait for a log writer's thread. Past it a request waits to log (no line
/// is dropped): the queue is back-pressure, not a store. (tracing-appender's default, 128 000
/// lines, let a saturated server hold 20 MiB of lines not yet written.)
const QUEUED_LINES_LIMIT: usize = 4096;

/// `writer`, fed by a thread of its own (`thread_name`) through the bounded queue above.
fn off_the_request_path(
    thread_name: &str,
    writer: impl std::io::Write + Send + 'static,
) -> (NonBlocking, WorkerGuard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES_LIMIT)
        .thread_name(thread_name)
        .finish(writer)
}

/// Standard output, written off the request path in blocks: a thread drains the queued lines
/// into a buffer and writes it when the queue is empty, one `write` for many lines where
/// stdout's own line buffering makes one per line (a tenth of a cached read's cost).
pub fn stdout_writer() -> (NonBlocking, WorkerGuard) {
    off_the_request_path(
        "log-stdout",
        std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
    )
}

/// A daily-rotated log file (`LOG_FILE` is the path prefix: `logs/filmvault.log` writes
/// `logs/filmvault.log.2026-11-23`), two weeks kept, written off the request path. Its mode
/// is 0600 because `main` sets the process umask to 077 before anything is created.
pub fn file_writer(path: &std::path::Path) -> anyhow::Result<(NonBlocking, WorkerGuard)> {
    let directory = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let prefix = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| anyhow::anyhow!("LOG_FILE: {} has no file name", path.display()))?;
    std::fs::create_dir_all(directory).with_context(|| {
        format!(
            "LOG_FILE: cannot create the directory {}",
            directory.display()
        )
    })?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(prefix)
        .max_log_files(14)
        .build(directory)
        .with_context(|| {
            format!(
                "LOG_FILE: cannot write log files in {}",
                directory.display()
            )
        })?;
    Ok(off_the_request_path("log-file", appender))
}

/// Installs `subscriber` globally and bridges the `log` records of actix and rustls into it.
pub fn init(subscriber: impl Subscriber + Send + Sync) -> anyhow::Result<()> {
    subscriber.try_init()?;
    Ok(())
}

/// Routes panics through the log instead of stderr. Panic messages formatted at run time may
/// embed any value; only literal messages and the location are logged, so a panic cannot
/// carry a secret into the log. (Not installed by the tests, whose failures need the message.)
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("<formatted panic message withheld>");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic.message = message, panic.location = %location, "panic");
    }));
}
