//! `/api/v1/users/me`: the caller's own account.

use actix_web::{HttpResponse, web};

use crate::{
    auth::{Authenticated, Read},
    domain::user,
    error::ApiError,
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/me").route(web::get().to(me)));
}

async fn me(
    state: web::Data<AppState>,
    caller: Authenticated<Read>,
) -> Result<HttpResponse, ApiError> {
    // A token can outlive its account only until revocation catches it; 401, not 404.
    let profile = user::profile(&state.db.reader, caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(profile))
}
