//! `/health/live` and `/health/ready`: cheap, unauthenticated, not rate limited, so an
//! orchestrator can always ask.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/live").route(web::get().to(live)))
        .service(web::resource("/ready").route(web::get().to(ready)));
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.db.is_ready().await {
        Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::NotReady)
    }
}
