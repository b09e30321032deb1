//! `/api/v1/admin`: user management, for administrators only.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::{
    auth::{AdminRead, Authenticated},
    domain::{Page, user},
    error::ApiError,
    extract::Query,
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(web::get().to(list_users)));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        Page::new(self.limit, self.offset)
    }
}

async fn list_users(
    state: web::Data<AppState>,
    _admin: Authenticated<AdminRead>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let users = user::list(&state.db.reader, query.0.page()?).await?;
    Ok(HttpResponse::Ok().json(users))
}
