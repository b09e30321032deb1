//! `/api/v1/admin`: user management, for administrators only.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::{
    audit::{self, AuditAction, AuditContext, EventFilter, StoredEvent},
    auth::{
        AdminRead, AdminWrite, Authenticated, Role,
        sessions::{self, EndedBy, Which},
    },
    db::Timestamp,
    domain::{
        Page, Paginated,
        user::{self, AccountChanges, UserProfile},
    },
    error::ApiError,
    extract::{Json, Query},
    mail::{self, MailRecord, MailState},
    routes::users::{SessionList, revoke_access_tokens},
    state::AppState,
    web::problem::Problem,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(super::read().to(list_users)))
        .service(web::resource("/users/{id}").route(web::patch().to(update_user)))
        .service(
            web::resource("/users/{id}/sessions")
                .route(super::read().to(list_user_sessions))
                .route(web::delete().to(end_user_sessions)),
        )
        .service(web::resource("/audit-events").route(super::read().to(list_audit_events)))
        .service(web::resource("/mails").route(super::read().to(list_mails)));
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 100_000)]
    pub offset: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        Page::new(self.limit, self.offset)
    }
}

/// All accounts, paginated.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", params(PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "A page of accounts", body = Paginated<UserProfile>)))]
pub(crate) async fn list_users(
    state: web::Data<AppState>,
    _admin: Authenticated<AdminRead>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let users = user::list(&mut state.db.read().await?, &state.keyring, query.0.page()?).await?;
    Ok(HttpResponse::Ok().json(users))
}

/// At least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// Change an account's role or disable it.
///
/// Either ends the user's sessions at once (refresh and access tokens). The last active
/// admin cannot be demoted or disabled (409).
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", params(("id" = i64, Path)),
    request_body = UpdateUserRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The changed account", body = UserProfile),
        (status = 409, description = "It is the last active admin", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn update_user(
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
    let update = user::update_account(&state.db, &state.keyring, *id, changes, &audit).await?;
    if let Some(version) = update.new_token_version {
        state.revocations.set_version(*id, version).await;
    }
    Ok(HttpResponse::Ok().json(update.profile))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditEventsQuery {
    /// User id of the actor.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub actor: Option<i64>,
    /// One of the audit actions (`auth.login`, …); any other value is refused.
    #[param(inline)]
    pub action: Option<AuditAction>,
    /// Inclusive lower bound: RFC 3339 (`2026-11-23T10:00:00Z`) or a date (`2026-11-23`).
    #[param(max_length = 64)]
    pub since: Option<String>,
    /// Exclusive upper bound, same forms.
    #[param(max_length = 64)]
    pub until: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 100_000)]
    pub offset: Option<i64>,
}

/// An RFC 3339 timestamp, or a date (its midnight, UTC).
fn parse_bound(field: &str, raw: &str) -> Result<Timestamp, ApiError> {
    use time::{Date, macros::format_description};
    Timestamp::parse_rfc3339(raw)
        .or_else(|| {
            Date::parse(raw, format_description!("[year]-[month]-[day]"))
                .ok()
                .map(|date| Timestamp::from(date.midnight().assume_utc()))
        })
        .ok_or_else(|| {
            ApiError::invalid_field(field, "must be an RFC 3339 timestamp or a YYYY-MM-DD date")
        })
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit-events", tag = "admin", params(AuditEventsQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "A page of events", body = Paginated<StoredEvent>)))]
pub(crate) async fn list_audit_events(
    state: web::Data<AppState>,
    _admin: Authenticated<AdminRead>,
    query: Query<AuditEventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.0;
    let page = Page::new(query.limit, query.offset)?;
    let filter = EventFilter {
        actor_id: query.actor,
        action: query.action,
        since: query
            .since
            .as_deref()
            .map(|raw| parse_bound("since", raw))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|raw| parse_bound("until", raw))
            .transpose()?,
    };
    let events = audit::list(&mut state.db.read().await?, &filter, page).await?;
    Ok(HttpResponse::Ok().json(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_normalised_to_utc() {
        assert_eq!(
            parse_bound("since", "2026-11-23").unwrap().to_string(),
            "2026-11-23T00:00:00.000Z"
        );
        assert_eq!(
            parse_bound("since", "2026-11-23T12:30:00+02:00")
                .unwrap()
                .to_string(),
            "2026-11-23T10:30:00.000Z"
        );
        for bad in ["yesterday", "2026-13-01", "2026-11-23 10:00", "1700000000"] {
            assert!(parse_bound("since", bad).is_err(), "{bad}");
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MailQuery {
    /// `dead` (the default): mails given up on after their last attempt.
    pub state: Option<MailState>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 100_000)]
    pub offset: Option<i64>,
}

/// Mails of the outbox in one delivery state, newest first.
///
/// Each shows its kind, attempts, last error and times; never the recipient or the body
/// (which may carry a token).
#[utoipa::path(get, path = "/api/v1/admin/mails", tag = "admin", params(MailQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "A page of mails", body = Paginated<MailRecord>)))]
pub(crate) async fn list_mails(
    state: web::Data<AppState>,
    _admin: Authenticated<AdminRead>,
    query: Query<MailQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::new(query.0.limit, query.0.offset)?;
    let mails = mail::list(&state.db, query.0.state.unwrap_or(MailState::Dead), page).await?;
    Ok(HttpResponse::Ok().json(mails))
}

/// A user's live sessions (none is `current`).
#[utoipa::path(get, path = "/api/v1/admin/users/{id}/sessions", tag = "admin",
    params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The sessions", body = SessionList)))]
pub(crate) async fn list_user_sessions(
    state: web::Data<AppState>,
    _admin: Authenticated<AdminRead>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let idle = state.session_activity.policy();
    let items = sessions::list(&state.db, *id, None, idle).await?;
    Ok(HttpResponse::Ok().json(SessionList { items }))
}

/// End every session of a user: their refresh and access tokens stop at once.
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}/sessions", tag = "admin",
    params(("id" = i64, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Ended")))]
pub(crate) async fn end_user_sessions(
    state: web::Data<AppState>,
    _admin: Authenticated<AdminWrite>,
    audit: AuditContext,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let which = Which::AllBut(None);
    let ended = sessions::end(&state.db, *id, which, EndedBy::Admin, &audit).await?;
    revoke_access_tokens(&state, &ended).await;
    Ok(HttpResponse::NoContent().finish())
}
