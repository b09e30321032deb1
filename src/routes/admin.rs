//! `/api/v1/admin`: user management, for administrators only.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::{
    audit::AuditContext,
    auth::{AdminRead, AdminWrite, Authenticated, Role},
    domain::{
        Page,
        user::{self, AccountChanges},
    },
    error::ApiError,
    extract::{Json, Query},
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(web::get().to(list_users)))
        .service(web::resource("/users/{id}").route(web::patch().to(update_user)));
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// Changing a role or disabling ends the user's sessions at once (refresh and access tokens).
async fn update_user(
    state: web::Data<AppState>,
    _admin: Authenticated<AdminWrite>,
    audit: AuditContext,
    id: web::Path<i64>,
    Json(request): Json<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    if request.role.is_none() && request.disabled.is_none() {
        return Err(ApiError::bad_request(
            "Send at least one of `role`, `disabled`.",
        ));
    }
    let changes = AccountChanges {
        role: request.role,
        disabled: request.disabled,
    };
    let update = user::update_account(&state.db.writer, *id, changes, &audit).await?;
    if let Some(version) = update.new_token_version {
        state.revocations.set_version(*id, version);
    }
    Ok(HttpResponse::Ok().json(update.profile))
}
