//! `/health/live` and `/health/ready`: cheap, unauthenticated, not rate limited, so an
//! orchestrator can always ask.

use actix_web::{HttpResponse, web};

use crate::{error::ApiError, state::AppState};

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok", max_length = 16)]
    pub status: &'static str,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/live").route(super::read().to(live)))
        .service(web::resource("/ready").route(super::read().to(ready)));
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The database file opens and every migration is applied.
///
/// With several instances (`REDIS_URL`), Redis answers too: without it every request but
/// the health probes is refused with 503.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "Ready", body = Health)))]
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let redis_ready = match &state.redis {
        Some(redis) => redis.is_ready().await,
        None => true,
    };
    if redis_ready && state.db.is_ready().await {
        Ok(HttpResponse::Ok().json(Health { status: "ready" }))
    } else {
        Err(ApiError::NotReady)
    }
}
