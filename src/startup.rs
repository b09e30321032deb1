//! Assembles the application: the database, the shared state, the middleware stack (in this
//! order, outermost first) and the routes.
//!
//! request context (id, client IP) → request log → security headers → problem+json for every
//! error → routes. Handlers enforce authentication through their extractors.

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, middleware::from_fn, web};
use anyhow::Context;

use crate::{
    auth::{jwt::JwtCodec, password::PasswordHasher, revocation::Revocations},
    config::Settings,
    db::Database,
    domain::seed,
    error::{self, ApiError},
    extract::BodyLimits,
    routes,
    security::{headers::security_headers, rate_limit::LoginThrottle},
    state::AppState,
    telemetry,
};

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Opens the database (migrating it), binds the listener (port 0 picks a free one) and
    /// prepares the server; nothing is served until `run_until_stopped`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Database::connect(&settings.database_url).await?;
        if settings.seed_demo_data {
            let added = seed::seed_demo_films(&db.writer).await?;
            if added > 0 {
                tracing::info!(
                    films = added,
                    "seeded the demo catalogue into an empty database"
                );
            }
        }
        let listener = TcpListener::bind((settings.host, settings.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            passwords: PasswordHasher::new(settings.password_hash_concurrency)?,
            jwt: JwtCodec::new(&settings.jwt),
            revocations: Revocations::load(&db.reader, settings.jwt.access_token_ttl.as_secs())
                .await?,
            login_throttle: LoginThrottle::new(settings.rate_limits.login_per_username),
            db,
            settings,
        });
        let server = serve(listener, state)?;
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn serve(listener: TcpListener, state: web::Data<AppState>) -> anyhow::Result<Server> {
    let settings = &state.settings;
    let trusted_proxies = Arc::new(settings.trusted_proxies.clone());
    let https = settings.serves_https();
    let body_limits = web::Data::new(BodyLimits {
        max_bytes: settings.max_json_body_bytes,
        read_timeout: settings.request_timeout,
    });
    let workers = settings.workers;
    let keep_alive = settings.keep_alive;
    let request_timeout = settings.request_timeout;

    let server = HttpServer::new(move || {
        let trusted_proxies = trusted_proxies.clone();
        App::new()
            .app_data(state.clone())
            .app_data(body_limits.clone())
            .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
            .configure(mount_routes)
            .default_service(web::to(routes::not_found))
            .wrap(from_fn(error::problem_details))
            .wrap(from_fn(move |req, next| security_headers(https, req, next)))
            .wrap(telemetry::request_logger())
            .wrap(from_fn(move |req, next| {
                telemetry::request_context(trusted_proxies.clone(), req, next)
            }))
    })
    .workers(workers)
    .keep_alive(keep_alive)
    // Time allowed to send the request head; the body has its own deadline (BodyLimits).
    .client_request_timeout(request_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(2))
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}

fn mount_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .service(web::scope("/auth").configure(routes::auth::configure))
            .service(web::scope("/users").configure(routes::users::configure))
            .service(web::scope("/films").configure(routes::films::configure))
            .service(web::scope("/admin").configure(routes::admin::configure)),
    )
    .service(web::scope("/health").configure(routes::health::configure))
    .configure(routes::legacy::configure);
}
