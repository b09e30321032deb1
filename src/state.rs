//! What every handler can reach: registered once as `web::Data<AppState>`.

use crate::{
    auth::{jwt::JwtCodec, password::PasswordHasher},
    config::Settings,
    db::Database,
};

pub struct AppState {
    pub db: Database,
    pub passwords: PasswordHasher,
    pub jwt: JwtCodec,
    pub settings: Settings,
}
