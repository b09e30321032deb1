//! What every handler can reach: registered once as `web::Data<AppState>`.

use crate::{
    audit::AuditQueue,
    auth::{
        jwt::JwtCodec, password::PasswordHasher, revocation::Revocations, sessions::SessionActivity,
    },
    cluster::RedisStore,
    config::Settings,
    crypto::Keyring,
    db::Database,
    domain::{film::Creations, vote::Ballots},
    read_cache::ReadCache,
    security::{login_monitor::LoginMonitor, login_throttle::LoginThrottle},
};

pub struct AppState {
    pub db: Database,
    /// Several instances: where they share their security state (`REDIS_URL`).
    pub redis: Option<RedisStore>,
    pub passwords: PasswordHasher,
    pub jwt: JwtCodec,
    /// Seals stored secrets and personal data; computes their blind indexes.
    pub keyring: Keyring,
    pub revocations: Revocations,
    /// Votes and new films waiting to be written together (`domain::group_commit`).
    pub ballots: Ballots,
    pub creations: Creations,
    /// Film reads as answered, forgotten by every write (`read_cache`).
    pub reads: ReadCache,
    /// Access-token use of each session, for the idle timeout.
    pub session_activity: SessionActivity,
    pub login_throttle: LoginThrottle,
    pub login_monitor: LoginMonitor,
    pub audit: AuditQueue,
    pub settings: Settings,
}
