//! What every handler can reach: registered once as `web::Data<AppState>`.

use crate::{
    audit::AuditQueue,
    auth::{jwt::JwtCodec, password::PasswordHasher, revocation::Revocations},
    config::Settings,
    db::Database,
    security::rate_limit::LoginThrottle,
};

pub struct AppState {
    pub db: Database,
    pub passwords: PasswordHasher,
    pub jwt: JwtCodec,
    pub revocations: Revocations,
    pub login_throttle: LoginThrottle,
    pub audit: AuditQueue,
    pub settings: Settings,
}
