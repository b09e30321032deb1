//! Assembles the application: the database, the shared state, the listeners, the middleware
//! stack and the routes.
//!
//! Middleware, outermost first:
//! requests-in-progress count (a connection idle for too long is closed, idle_connections) →
//! unread-body guard (an answer holds the request body until written, so an unread rest
//! closes the connection instead of being drained) → request context (id, client IP) → request log → metrics → security headers →
//! problem+json for every error → audit of 401/403/429 → URL and header size limits → CORS →
//! load shedding → global per-IP rate limit → plain HTTP with TLS on (pages redirected, API
//! refused and its credentials revoked: `plain_http`) → per-scope rate limits → handlers,
//! which enforce authentication through their extractors.
//!
//! CORS sits outside the limiters so a 429 still carries CORS headers (a browser can read
//! it), and preflights are answered before they could be counted. The audit of denials sits
//! outside the global limiter so that the limiter's own 429s are accounted for too: a flood
//! costs it one counter per request and one summary row per client and window, not a row each.
//! The plain-HTTP policy sits inside the global limiter: a refused request may cost a few
//! credential lookups, so a flood of them is limited like any other.

use secrecy::ExposeSecret;
use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::Duration,
};

use actix_web::{
    App, HttpResponse, HttpServer,
    body::MessageBody,
    dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse},
    http::header,
    middleware::{Condition, from_fn},
    web,
};
use anyhow::Context;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    audit::{self, AuditQueue},
    auth::{
        account_tokens,
        jwt::JwtCodec,
        password::PasswordHasher,
        refresh,
        revocation::Revocations,
        sessions::{IdlePolicy, SessionActivity},
        signing_keys,
    },
    cluster::{RedisStore, revocation_channel::RevocationChannel},
    config::{RetentionSettings, Settings},
    crypto::{self, Keyring},
    db::Database,
    domain::{email, film::Creations, seed, vote::Ballots},
    error::ApiError,
    extract::BodyLimits,
    mail, monitoring, openapi,
    read_cache::ReadCache,
    routes,
    security::{
        client_ip::ClientResolver,
        cors::cors,
        headers::security_headers,
        idle_connections::{IdleLimit, count_requests_in_progress},
        limits::limit_request_head,
        login_monitor::LoginMonitor,
        login_throttle::LoginThrottle,
        overload::{InFlightLimit, limit_in_flight},
        plain_http::refuse_plain_http,
        rate_limit::Limiters,
        tls,
        tls_reload::ReloadingCertificate,
        unread_body::close_after_unread_body,
    },
    state::AppState,
    telemetry,
    web::{audit::audit_denials, idempotency, problem::problem_details},
};

/// How often idle rate-limiter keys are forgotten.
const LIMITER_PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// How often records past their retention are deleted (and once at start).
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long a stop waits for the audit writer, then for the database connections: each of
/// its writes waits for the writing connection, which pruning may hold, and an orchestrator
/// kills after its own grace period (Kubernetes: 30 s, of which the requests in progress
/// may take 10).
const FINISH_AUDIT_WITHIN: Duration = Duration::from_secs(10);
const CLOSE_DATABASE_WITHIN: Duration = Duration::from_secs(5);

pub struct Application {
    port: u16,
    https_port: Option<u16>,
    metrics_port: Option<u16>,
    server: Server,
    metrics_server: Option<Server>,
    /// What is left to do once the listeners have stopped.
    audit: AuditQueue,
    db: Database,
}

impl Application {
    /// Opens the database (migrating it), binds the listeners (port 0 picks a free one) and
    /// prepares the server; nothing is served until `run_until_stopped`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let http_listener = listen(
            SocketAddr::new(settings.host, settings.port),
            "APP_HOST",
            "APP_PORT",
        )?;
        let port = http_listener.local_addr()?.port();
        let tls = TlsSetup::prepare(&settings)?;
        let https_port = match &tls {
            Some(tls) => Some(tls.https_listener.local_addr()?.port()),
            None => None,
        };
        let internal_tls = tls.as_ref().and_then(|tls| tls.internal.clone());
        let state = build_state(settings).await?;
        if let Some(tls) = &tls {
            tls.certificate.clone().spawn_reload(tls.reload_interval);
        }
        monitoring::handle();
        monitoring::describe_instance(&state.settings.instance_id);
        let limiters = Limiters::new(&state.settings.rate_limits, state.redis.as_ref());
        spawn_revocation_follower(state.clone());
        spawn_limiter_purge(limiters.clone(), state.clone());
        spawn_pruning(state.clone());
        spawn_signing_key_refresh(state.clone());
        mail::Postman::new(&state.settings.mail)?.spawn(state.clone());
        let (metrics_server, metrics_port) = match state.settings.metrics_addr {
            Some(addr) => {
                let listener = listen(addr, "METRICS_ADDR", "METRICS_ADDR")?;
                let port = listener.local_addr()?.port();
                (
                    Some(serve_metrics(
                        listener,
                        internal_tls,
                        state.clone(),
                        limiters.clone(),
                    )?),
                    Some(port),
                )
            }
            None => (None, None),
        };
        let public_tls = tls.map(|tls| (tls.https_listener, tls.public));
        let (audit, db) = (state.audit.clone(), state.db.clone());
        let server = serve(http_listener, public_tls, https_port, state, limiters)?;
        Ok(Self {
            port,
            https_port,
            metrics_port,
            server,
            metrics_server,
            audit,
            db,
        })
    }

    /// The plain-HTTP port (with TLS on: health probes, and redirects for pages only).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn https_port(&self) -> Option<u16> {
        self.https_port
    }

    /// The port of the separate metrics listener, when `METRICS_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Serves until a signal (SIGTERM, SIGINT) stops the listeners and the requests in
    /// progress are answered; then stores the audit events still queued and the open denial
    /// windows' summaries, and closes the database (SQLite checkpoints its WAL).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = match self.metrics_server {
            Some(metrics) => futures_util::future::try_join(self.server, metrics)
                .await
                .map(|_| ()),
            None => self.server.await,
        };
        finish_after_stop(&self.audit, &self.db).await;
        served
    }
}

/// Stores what the audit writer still holds, then closes the database, each within its bound.
async fn finish_after_stop(audit: &AuditQueue, db: &Database) {
    if tokio::time::timeout(FINISH_AUDIT_WITHIN, audit.finish())
        .await
        .is_err()
    {
        tracing::error!(
            target: "audit",
            "the audit writer did not finish within {FINISH_AUDIT_WITHIN:?}: the events still \
             queued are lost"
        );
    }
    if tokio::time::timeout(CLOSE_DATABASE_WITHIN, db.close())
        .await
        .is_err()
    {
        tracing::warn!("the database connections did not close within {CLOSE_DATABASE_WITHIN:?}");
    }
}

/// What serving TLS takes: the certificate both listeners present (reloaded when its files
/// change), the HTTPS socket, and each listener's rustls configuration.
struct TlsSetup {
    certificate: Arc<ReloadingCertificate>,
    reload_interval: Duration,
    https_listener: TcpListener,
    public: rustls::ServerConfig,
    /// The internal listener's, with `INTERNAL_CLIENT_CA_PATH` (mutual TLS).
    internal: Option<rustls::ServerConfig>,
}

impl TlsSetup {
    fn prepare(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(tls) = &settings.tls else {
            return Ok(None);
        };
        let certificate = Arc::new(ReloadingCertificate::load(
            &tls.cert_path,
            &tls.key_path,
            tls::provider(),
        )?);
        let internal = match &settings.internal_client_ca_path {
            Some(client_ca) => Some(tls::internal_server_config(certificate.clone(), client_ca)?),
            None => None,
        };
        Ok(Some(Self {
            https_listener: listen(
                SocketAddr::new(settings.host, tls.https_port),
                "APP_HOST",
                "HTTPS_PORT",
            )?,
            public: tls::server_config(certificate.clone())?,
            internal,
            reload_interval: tls.reload_interval,
            certificate,
        }))
    }
}

/// Opens the database (migrating it, seeding it if asked) and builds the shared state.
pub async fn build_state(settings: Settings) -> anyhow::Result<web::Data<AppState>> {
    let db = Database::connect(settings.database_url.expose_secret()).await?;
    let keyring = crypto::load_keyring(&settings.data_keys, &settings.database_url)?;
    seal_legacy_emails(&db, &keyring).await?;
    if settings.seed_demo_data {
        let added = seed::seed_demo_films(&db).await?;
        if added > 0 {
            tracing::info!(
                films = added,
                "seeded the demo catalogue into an empty database"
            );
        }
    }
    let redis = match &settings.redis {
        Some(shared) => Some(RedisStore::new(&shared.url, &shared.key_prefix, &keyring)?),
        None => None,
    };
    let channel = settings
        .redis
        .as_ref()
        .zip(redis.as_ref())
        .map(|(shared, store)| {
            Arc::new(RevocationChannel::new(store.clone(), shared.max_staleness))
        });
    tracing::info!(
        instance = %settings.instance_id,
        shared_state = if redis.is_some() { "redis" } else { "memory" },
        "security state ready"
    );
    Ok(web::Data::new(AppState {
        passwords: PasswordHasher::new(
            settings.limits.password_hash_concurrency,
            settings.limits.password_hash_queue,
        )?,
        jwt: JwtCodec::load(&settings.jwt, db.clone(), &keyring).await?,
        keyring,
        revocations: Revocations::load(
            &db,
            settings.jwt.access_token_ttl.as_secs(),
            channel.clone(),
        )
        .await?,
        reads: ReadCache::new(settings.read_cache, channel),
        session_activity: SessionActivity::new(IdlePolicy::new(settings.jwt.session_idle_timeout)),
        login_throttle: LoginThrottle::new(settings.rate_limits.login_per_username, redis.as_ref()),
        login_monitor: LoginMonitor::new(settings.suspicious_logins, redis.as_ref()),
        redis,
        audit: AuditQueue::start(db.clone(), settings.audit_denial_window),
        ballots: Ballots::start(db.clone()),
        creations: Creations::start(db.clone()),
        db,
        settings,
    }))
}

/// Addresses stored in clear before emails were sealed are sealed (in their normal form)
/// before anything can register beside them, and their bytes cleared out of the files.
pub async fn seal_legacy_emails(db: &Database, keyring: &Keyring) -> anyhow::Result<()> {
    let sealed = email::seal_legacy_emails(db, keyring)
        .await
        .context("cannot seal the emails stored in clear")?;
    if sealed > 0 {
        db.scrub()
            .await
            .context("cannot clear the emails stored in clear out of the database files")?;
        tracing::info!(users = sealed, "sealed the emails stored in clear");
    }
    Ok(())
}

/// Listens on `address`; a failure names the variable to change and says how.
fn listen(
    address: SocketAddr,
    host_variable: &str,
    port_variable: &str,
) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).map_err(|error| {
        let (variable, advice) = match error.kind() {
            ErrorKind::AddrInUse => (
                port_variable,
                format!(
                    "another process uses that port: stop it, or set {port_variable} to a free port"
                ),
            ),
            ErrorKind::PermissionDenied => (
                port_variable,
                format!("ports below 1024 need privileges: set {port_variable} to 1024 or above"),
            ),
            ErrorKind::AddrNotAvailable => (
                host_variable,
                format!(
                    "not an address of this machine: set {host_variable} to 127.0.0.1 (or \
                     0.0.0.0 in a container)"
                ),
            ),
            _ => (
                port_variable,
                format!("check {host_variable} and {port_variable}"),
            ),
        };
        anyhow::anyhow!("{variable}: cannot listen on {address} ({error}); {advice}")
    })
}

fn spawn_limiter_purge(limiters: Limiters, state: web::Data<AppState>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(LIMITER_PURGE_INTERVAL);
        loop {
            interval.tick().await;
            limiters.retain_recent();
            state.login_throttle.retain_recent();
            state.login_monitor.purge();
        }
    });
}

/// Several instances: hears the others' revocations (a single instance has nothing to hear).
fn spawn_revocation_follower(state: web::Data<AppState>) {
    if state.redis.is_some() {
        tokio::spawn(async move { state.revocations.follow_broadcast(&state.reads).await });
    }
}

/// Retired keys leave the published set, and keys rotated elsewhere join it, within this
/// interval even on an instance that signs nothing.
fn spawn_signing_key_refresh(state: web::Data<AppState>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(signing_keys::REFRESH_INTERVAL);
        interval.tick().await;
        loop {
            interval.tick().await;
            if let Err(error) = state.jwt.keys().refresh().await {
                tracing::error!(%error, "the signing keys could not be re-read");
            }
        }
    });
}

fn spawn_pruning(state: web::Data<AppState>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            interval.tick().await;
            prune_past_retention(&state.db, state.settings.retention).await;
        }
    });
}

async fn prune_past_retention(db: &Database, retention: RetentionSettings) {
    match audit::prune(db, retention.audit_days).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "audit events past their retention deleted"),
        Err(error) => tracing::error!(error = %error, "the audit trail could not be pruned"),
    }
    match refresh::prune_spent(db, retention.spent_refresh_token_days).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "spent refresh tokens past their retention deleted"),
        Err(error) => tracing::error!(error = %error, "spent refresh tokens could not be pruned"),
    }
    // Mailed tokens keep the refresh tokens' retention: both say who was sent what, when.
    match account_tokens::prune_expired(db, retention.spent_refresh_token_days).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(
            deleted,
            "expired mailed tokens past their retention deleted"
        ),
        Err(error) => tracing::error!(error = %error, "expired mailed tokens could not be pruned"),
    }
    match idempotency::purge_expired(db).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "expired idempotency keys deleted"),
        Err(error) => {
            tracing::error!(error = %error, "expired idempotency keys could not be purged")
        }
    }
}

/// The internal listener: one route, one worker, nothing else. With a TLS configuration (mutual
/// TLS: `INTERNAL_CLIENT_CA_PATH`) only clients with a certificate get as far as HTTP;
/// without one, it is plain HTTP on loopback (the configuration refuses any other address).
fn serve_metrics(
    listener: TcpListener,
    mutual_tls: Option<rustls::ServerConfig>,
    state: web::Data<AppState>,
    limiters: Limiters,
) -> anyhow::Result<Server> {
    let limiters = web::Data::new(limiters);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(limiters.clone())
            .route(
                "/metrics",
                web::get().to(monitoring::metrics_on_internal_listener),
            )
    })
    .workers(1);
    let server = match mutual_tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

fn serve(
    http_listener: TcpListener,
    tls: Option<(TcpListener, rustls::ServerConfig)>,
    https_port: Option<u16>,
    state: web::Data<AppState>,
    limiters: Limiters,
) -> anyhow::Result<Server> {
    let limits = state.settings.limits.clone();
    let idle_limit = IdleLimit::new(limits.keep_alive, limits.request_timeout);
    let parts = AppParts::new(state, limiters, https_port);
    let server = HttpServer::new(move || app(parts.clone()))
        // actix-http bounds the first head only; later ones are bounded by this watch.
        .on_connect(move |connection, data| idle_limit.watch(connection, data))
        .workers(limits.workers)
        .keep_alive(limits.keep_alive)
        // Time allowed to send the request head; the body has its own deadline (BodyLimits).
        .client_request_timeout(limits.request_timeout)
        // Also how long the unread rest of a body is read after the answer (unread_body).
        .client_disconnect_timeout(Duration::from_secs(2))
        .shutdown_timeout(10)
        .listen(http_listener)?;
    let server = match tls {
        Some((listener, config)) => server.listen_rustls_0_23(listener, config)?,
        None => server,
    };
    Ok(server.run())
}

/// What each worker's `App` is made of: prepared once from the settings, cloned per worker.
#[derive(Clone)]
struct AppParts {
    state: web::Data<AppState>,
    limiters: web::Data<Limiters>,
    body_limits: web::Data<BodyLimits>,
    clients: Arc<ClientResolver>,
    in_flight: InFlightLimit,
    cors_origins: Vec<String>,
    /// Where plain HTTP redirects, when TLS is on.
    redirect_base: Option<Arc<str>>,
    tls_terminated_by_proxy: bool,
}

impl AppParts {
    fn new(state: web::Data<AppState>, limiters: Limiters, https_port: Option<u16>) -> Self {
        let settings = &state.settings;
        let limits = &settings.limits;
        Self {
            limiters: web::Data::new(limiters),
            body_limits: web::Data::new(BodyLimits {
                max_bytes: limits.max_json_body_bytes,
                read_timeout: limits.request_timeout,
            }),
            clients: Arc::new(ClientResolver::new(
                settings.trusted_proxies.clone(),
                settings.client_ipv6_prefix_len,
            )),
            in_flight: InFlightLimit::new(
                limits.max_in_flight_requests,
                limits.overload_queue_timeout,
            ),
            cors_origins: settings.cors_allowed_origins.clone(),
            redirect_base: https_port
                .map(|port| tls::redirect_base(settings.public_base_url.as_deref(), port).into()),
            tls_terminated_by_proxy: settings.tls_terminated_by_proxy,
            state,
        }
    }
}

/// The routes in their middleware stack (see the module's documentation for the order).
fn app(
    parts: AppParts,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let AppParts {
        state,
        limiters,
        body_limits,
        clients,
        in_flight,
        cors_origins,
        redirect_base,
        tls_terminated_by_proxy,
    } = parts;
    App::new()
        .app_data(state)
        .app_data(limiters.clone())
        .app_data(body_limits)
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
        .configure(|cfg| mount_routes(cfg, &limiters))
        .default_service(web::to(routes::not_found))
        .wrap(Condition::new(redirect_base.is_some(), {
            let base = redirect_base.unwrap_or_else(|| Arc::from(""));
            from_fn(move |req, next| refuse_plain_http(base.clone(), req, next))
        }))
        .wrap(limiters.global.clone())
        .wrap(from_fn(move |req, next| {
            limit_in_flight(in_flight.clone(), req, next)
        }))
        .wrap(cors(&cors_origins))
        .wrap(from_fn(limit_request_head))
        .wrap(from_fn(audit_denials))
        .wrap(from_fn(problem_details))
        .wrap(from_fn(move |req, next| {
            security_headers(tls_terminated_by_proxy, req, next)
        }))
        .wrap(from_fn(monitoring::record_requests))
        .wrap(telemetry::request_logger())
        .wrap(from_fn(move |req, next| {
            telemetry::request_context(clients.clone(), req, next)
        }))
        .wrap(from_fn(close_after_unread_body))
        .wrap(from_fn(count_requests_in_progress))
}

/// Every route of the service. Public so the OpenAPI drift test can mount exactly these.
pub fn mount_routes(cfg: &mut web::ServiceConfig, limiters: &Limiters) {
    // The auth routes have their own, stricter limiter instead of the write budget.
    let writes = || limiters.write.clone();
    let api = web::scope("/api/v1")
        .service(web::scope("/auth").configure(|cfg| routes::auth::configure(cfg, limiters)))
        .service(
            web::scope("/users")
                .wrap(writes())
                .configure(routes::users::configure)
                .configure(routes::mfa::configure),
        )
        .service(
            web::scope("/films")
                .wrap(writes())
                .configure(routes::films::configure),
        )
        .service(
            web::scope("/admin")
                .wrap(writes())
                .configure(routes::admin::configure),
        );
    cfg.service(api)
        .service(web::scope("/health").configure(routes::health::configure))
        .route(
            "/metrics",
            routes::read().to(monitoring::metrics_for_admins),
        )
        .route("/openapi.json", routes::read().to(openapi::serve_document))
        .route(
            "/.well-known/jwks.json",
            routes::read().to(routes::well_known::jwks),
        )
        .service(
            SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
        // Swagger UI lives under the directory; its relative asset links need the slash.
        .route(
            "/docs",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header((header::LOCATION, "/docs/"))
                    .finish()
            }),
        )
        .configure(routes::static_files::configure)
        .configure(|cfg| routes::legacy::configure(cfg, limiters));
}
