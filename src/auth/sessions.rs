//! Login sessions as their owner sees them: one per refresh-token family (`auth::refresh`),
//! with when it started and was last used, and from which address and user agent.
//!
//! A session ends when its user or an administrator ends it, or when it goes unused for
//! `SESSION_IDLE_TIMEOUT_SECS`. Ending revokes its refresh tokens in the database and its
//! access tokens through `auth::revocation` (every instance, same staleness rules).
//!
//! A session starts when its user proves their credentials (a login), and none is asked again
//! within it: its `created_at` is the `auth_time` of all its access tokens, which refreshes
//! keep (step-up, `auth::StepUp`).
//!
//! "Used" means a login, a refresh, or a request with one of its access tokens. Access-token
//! use is written to the database at most once per touch interval (a minute, or a quarter of
//! the idle timeout if that is shorter), so `last_used_at` is that coarse and a session ends
//! between the idle timeout and the timeout plus one touch interval after its last use.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    audit::{self, AuditAction, AuditContext, AuditTarget, Outcome},
    auth::{
        lock_account,
        refresh_families::{RevokeReason, revoke_family},
        unix_now_i64,
    },
    db::{self, Database, Executor, Timestamp, Transaction},
    error::{ApiError, Step},
    security::client_ip::ClientIp,
};

/// Longer user agents are cut: enough to tell browsers and devices apart.
const MAX_USER_AGENT_CHARS: usize = 256;
const MAX_TOUCH_INTERVAL_SECS: u64 = 60;
/// Sessions listed at most (the most recently used): the list is one page, never unbounded.
pub const MAX_LISTED: i64 = 100;

/// Where a session is used from, as recorded at login and refresh.
#[derive(Debug, Clone, Default)]
pub struct SessionClient {
    ip: Option<String>,
    user_agent: Option<String>,
}

impl SessionClient {
    pub fn of(req: &HttpRequest) -> Self {
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| {
                agent
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT_CHARS)
                    .collect::<String>()
            })
            .filter(|agent| !agent.trim().is_empty());
        Self {
            ip: ClientIp::of(req).map(|ip| ip.to_string()),
            user_agent,
        }
    }

    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }
}

impl FromRequest for SessionClient {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self::of(req)))
    }
}

/// How long a session may go unused.
#[derive(Debug, Clone, Copy)]
pub struct IdlePolicy {
    timeout_secs: u64,
    touch_interval_secs: u64,
}

impl IdlePolicy {
    pub fn new(timeout: Duration) -> Self {
        let timeout_secs = timeout.as_secs();
        Self {
            timeout_secs,
            touch_interval_secs: (timeout_secs / 4).clamp(1, MAX_TOUCH_INTERVAL_SECS),
        }
    }

    /// Unused since `last_used` for longer than the timeout (plus the touch interval that
    /// `last_used_at` may lag behind the real last use).
    fn is_idle(&self, last_used: i64, now: i64) -> bool {
        let allowed =
            i64::try_from(self.timeout_secs + self.touch_interval_secs).unwrap_or(i64::MAX);
        now.saturating_sub(last_used) > allowed
    }

    /// Sessions used at or after this instant are not idle.
    fn live_since(&self, now: i64) -> i64 {
        let allowed =
            i64::try_from(self.timeout_secs + self.touch_interval_secs).unwrap_or(i64::MAX);
        now.saturating_sub(allowed)
    }
}

/// Records a new session (`tx` also inserts its first refresh token), and returns when it
/// started.
pub async fn record_start(
    db: &mut impl Executor,
    session_id: &str,
    user_id: i64,
    client: &SessionClient,
) -> sqlx::Result<i64> {
    let now = unix_now_i64();
    db::execute!(
        db,
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, ip, user_agent)
         VALUES ($1, $2, $3, $3, $4, $5)",
        session_id,
        user_id,
        now,
        &client.ip,
        &client.user_agent
    )
    .await?;
    Ok(now)
}

/// A refresh: ends the session if it went idle (`None`), records the use otherwise and
/// returns when the session started (its `auth_time`).
pub async fn use_for_refresh(
    tx: &mut Transaction,
    session_id: &str,
    client: &SessionClient,
    idle: IdlePolicy,
    audit: &AuditContext,
) -> Result<Option<i64>, ApiError> {
    let now = unix_now_i64();
    let session: Option<(i64, i64)> = db::fetch_optional!(
        tx,
        "SELECT last_used_at, created_at FROM sessions WHERE id = $1",
        session_id
    )
    .await
    .step("read the session")?;
    match session {
        Some((last_used, started)) if !idle.is_idle(last_used, now) => {
            db::execute!(
                tx,
                "UPDATE sessions SET last_used_at = $2, ip = $3, user_agent = $4 WHERE id = $1",
                session_id,
                now,
                &client.ip,
                &client.user_agent
            )
            .await
            .step("record the session's use")?;
            Ok(Some(started))
        }
        _ => {
            end_idle_in(tx, session_id, audit).await?;
            Ok(None)
        }
    }
}

/// Revokes an idle session's tokens and records it, once (a second caller finds none live).
async fn end_idle_in(
    tx: &mut Transaction,
    session_id: &str,
    audit: &AuditContext,
) -> Result<(), ApiError> {
    let revoked = revoke_family(tx, session_id, RevokeReason::Idle)
        .await
        .step("revoke the idle session")?;
    if revoked > 0 {
        let event = audit
            .event(AuditAction::SessionIdle, Outcome::Success)
            .target(AuditTarget::Session(session_id.to_owned()))
            .reason("unused for longer than SESSION_IDLE_TIMEOUT_SECS");
        audit::record(tx, &event)
            .await
            .step("record the audit event")?;
    }
    Ok(())
}

/// One of a user's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// A UUID.
    #[schema(pattern = "^[0-9a-f-]{36}$", max_length = 36)]
    pub id: String,
    pub created_at: Timestamp,
    /// Coarse: access-token use is recorded at most once a minute.
    pub last_used_at: Timestamp,
    #[schema(max_length = 45)]
    pub ip: Option<String>,
    /// Cut to 256 characters.
    #[schema(max_length = 256)]
    pub user_agent: Option<String>,
    /// The session of the access token that asked.
    pub current: bool,
}

#[derive(sqlx::FromRow)]
struct StoredSession {
    id: String,
    created_at: i64,
    last_used_at: i64,
    ip: Option<String>,
    user_agent: Option<String>,
}

fn timestamp(unix: i64) -> Timestamp {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_or_else(|_| Timestamp::now(), Timestamp::from)
}

/// The user's live sessions (a live refresh token, not idle), newest use first.
pub async fn list(
    db: &Database,
    user_id: i64,
    current: Option<&str>,
    idle: IdlePolicy,
) -> sqlx::Result<Vec<SessionView>> {
    let now = unix_now_i64();
    let stored: Vec<StoredSession> = db::fetch_all!(
        &mut db.read().await?,
        "SELECT id, created_at, last_used_at, ip, user_agent FROM sessions s
         WHERE user_id = $1 AND last_used_at >= $2
           AND EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = s.id
                       AND r.revoked_at IS NULL AND r.expires_at > $3)
         ORDER BY last_used_at DESC, created_at DESC LIMIT $4",
        user_id,
        idle.live_since(now),
        now,
        MAX_LISTED
    )
    .await?;
    Ok(stored
        .into_iter()
        .map(|session| SessionView {
            current: current == Some(session.id.as_str()),
            id: session.id,
            created_at: timestamp(session.created_at),
            last_used_at: timestamp(session.last_used_at),
            ip: session.ip,
            user_agent: session.user_agent,
        })
        .collect())
}

/// Who ends a session, for its revocation reason and audit event.
#[derive(Debug, Clone, Copy)]
pub enum EndedBy {
    /// The session's own user (from that session or another).
    User,
    Admin,
}

impl EndedBy {
    fn reason(self) -> RevokeReason {
        match self {
            Self::User => RevokeReason::Logout,
            Self::Admin => RevokeReason::Admin,
        }
    }

    fn action(self) -> AuditAction {
        match self {
            Self::User => AuditAction::SessionEnd,
            Self::Admin => AuditAction::AdminSessionEnd,
        }
    }
}

/// Ends the live sessions of `user_id` that `which` selects, and returns their ids (for the
/// caller to revoke their access tokens). An id that is not a live session of this user
/// selects nothing.
pub async fn end(
    db: &Database,
    user_id: i64,
    which: Which<'_>,
    by: EndedBy,
    audit: &AuditContext,
) -> Result<Vec<String>, ApiError> {
    let mut tx = db.begin().await.step("begin the transaction")?;
    lock_account(&mut tx, user_id)
        .await
        .step("lock the account")?;
    let live: Vec<String> = db::fetch_scalars!(
        &mut tx,
        "SELECT DISTINCT family_id FROM refresh_tokens
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        user_id,
        unix_now_i64()
    )
    .await
    .step("read the live sessions")?;
    let ended: Vec<String> = live
        .into_iter()
        .filter(|id| match which {
            Which::One(one) => id == one,
            Which::AllBut(kept) => Some(id.as_str()) != kept,
        })
        .collect();
    for session_id in &ended {
        revoke_family(&mut tx, session_id, by.reason())
            .await
            .step("revoke the session's tokens")?;
        let event = audit
            .event(by.action(), Outcome::Success)
            .target(AuditTarget::Session(session_id.clone()))
            .reason(format!("session of user {user_id}"));
        audit::record(&mut tx, &event)
            .await
            .step("record the audit event")?;
    }
    tx.commit().await.step("commit")?;
    Ok(ended)
}

/// Which of a user's sessions to end.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    One(&'a str),
    /// Every one but this one (`None`: all).
    AllBut(Option<&'a str>),
}

/// Access-token use, as one instance sees it: when each session was last seen here and last
/// written to the database.
pub struct SessionActivity {
    idle: IdlePolicy,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// session id -> (last seen here, last written), unix seconds
    sessions: HashMap<String, (i64, i64)>,
    pruned_at: i64,
}

/// An access token, as far as its session's use is concerned.
#[derive(Debug, Clone, Copy)]
pub struct SessionToken<'a> {
    pub user_id: i64,
    pub session_id: &'a str,
    /// Unix seconds: issuing it was a use (login or refresh).
    pub issued_at: i64,
}

/// Whether an access token's session may still be used.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionUse {
    Active,
    /// Unused for too long: the session has been ended.
    Idle,
}

impl SessionActivity {
    pub fn new(idle: IdlePolicy) -> Self {
        Self {
            idle,
            seen: Mutex::default(),
        }
    }

    pub fn policy(&self) -> IdlePolicy {
        self.idle
    }

    /// A request with an access token of the session (its issue was itself a use). The database is read only when this instance
    /// has not seen the session for longer than the timeout (another may have), and written
    /// at most once per touch interval.
    pub async fn record_use(
        &self,
        db: &Database,
        token: SessionToken<'_>,
        audit: &AuditContext,
    ) -> Result<SessionUse, ApiError> {
        let now = unix_now_i64();
        let session_id = token.session_id;
        let (mut seen, mut written) = self
            .known(session_id)
            .unwrap_or((token.issued_at, token.issued_at));
        if self.idle.is_idle(seen, now) {
            let stored: Option<i64> = db::fetch_optional_scalar!(
                &mut db.read().await?,
                "SELECT last_used_at FROM sessions WHERE id = $1",
                session_id
            )
            .await?;
            match stored {
                Some(last_used) if !self.idle.is_idle(last_used, now) => {
                    seen = seen.max(last_used);
                    written = written.max(last_used);
                }
                _ => {
                    self.forget(session_id);
                    let mut tx = db.begin().await.step("begin the transaction")?;
                    lock_account(&mut tx, token.user_id)
                        .await
                        .step("lock the account")?;
                    end_idle_in(&mut tx, session_id, audit).await?;
                    tx.commit().await.step("commit")?;
                    return Ok(SessionUse::Idle);
                }
            }
        }
        let touch = i64::try_from(self.idle.touch_interval_secs).unwrap_or(i64::MAX);
        if now.saturating_sub(written) >= touch {
            db::execute!(
                &mut db.write().await?,
                "UPDATE sessions SET last_used_at = $2 WHERE id = $1 AND last_used_at < $2",
                session_id,
                now
            )
            .await?;
            written = now;
        }
        self.remember(session_id, now.max(seen), written, now);
        Ok(SessionUse::Active)
    }

    fn known(&self, session_id: &str) -> Option<(i64, i64)> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.sessions.get(session_id).copied()
    }

    fn forget(&self, session_id: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.sessions.remove(session_id);
    }

    /// Entries not seen for the idle time are dropped (their next use asks the database).
    fn remember(&self, session_id: &str, last_seen: i64, written: i64, now: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_sub(seen.pruned_at) >= 60 {
            let live_since = self.idle.live_since(now);
            seen.sessions.retain(|_, (last, _)| *last >= live_since);
            seen.pruned_at = now;
        }
        seen.sessions
            .insert(session_id.to_owned(), (last_seen, written));
    }
}
