//! What makes an access token worthless before it expires, kept in memory so that checking it
//! costs two hash-map lookups instead of a database query on every request.
//!
//! * A user's token version is bumped (in the database, then here) when they are disabled,
//!   change role, change password or delete their account: tokens carrying an older version
//!   are refused at once. A user's version is read from the database the first time one of
//!   their tokens is seen, then kept here; a token whose user does not exist (or is disabled)
//!   is refused, so no handler ever acts for an account that is not there. (A deleted account
//!   keeps its row as a disabled tombstone with a bumped version, so this path refuses it like
//!   any other: code that came to delete rows would have to make every instance forget them
//!   here too.)
//! * A session (refresh-token family) is revoked on logout, when its user or an administrator
//!   ends it (`auth::sessions`), when it goes idle, and on refresh-token reuse: access
//!   tokens issued in it are refused at once. An entry is kept only for one access-token
//!   lifetime, after which every token of that session has expired anyway.
//!
//! Both are loaded from the database at start, so a restart forgets nothing. With several
//! instances (`REDIS_URL`) each change is also announced on the revocation channel, and every
//! instance reads it from the database; while that channel is not confirmed for longer than
//! its staleness bound, tokens are checked against the database instead of this memory
//! (`cluster::revocation_channel`).

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use crate::{
    auth::{refresh_families::RevokeReason, unix_now},
    cluster::revocation_channel::{Notice, RevocationChannel},
    db::{self, Database},
    read_cache::ReadCache,
};

pub struct Revocations {
    db: Database,
    /// user id -> current token version, for every user seen since the start
    token_versions: RwLock<HashMap<i64, i64>>,
    /// family id -> unix time after which the entry can be forgotten
    revoked_sessions: RwLock<HashMap<String, u64>>,
    access_token_ttl_secs: u64,
    /// Several instances: how changes travel, and whether this memory may be trusted.
    channel: Option<Arc<RevocationChannel>>,
}

impl Revocations {
    pub async fn load(
        db: &Database,
        access_token_ttl_secs: u64,
        channel: Option<Arc<RevocationChannel>>,
    ) -> sqlx::Result<Self> {
        let revocations = Self {
            db: db.clone(),
            token_versions: RwLock::default(),
            revoked_sessions: RwLock::default(),
            access_token_ttl_secs,
            channel,
        };
        revocations.resync().await?;
        Ok(revocations)
    }

    /// Reads every bumped token version and every recently revoked session from the
    /// database into memory (which only ever adds revocations).
    async fn resync(&self) -> sqlx::Result<()> {
        let mut connection = self.db.read().await?;
        let versions: Vec<(i64, i64)> = db::fetch_all!(
            &mut connection,
            "SELECT id, token_version FROM users WHERE token_version > 0"
        )
        .await?;
        let since = unix_now().saturating_sub(self.access_token_ttl_secs);
        let sessions: Vec<(String, i64)> = db::fetch_all!(
            &mut connection,
            "SELECT family_id, max(revoked_at) FROM refresh_tokens
             WHERE revoked_at >= $1 AND revoked_reason IN ($2, $3, $4, $5)
             GROUP BY family_id",
            i64::try_from(since).unwrap_or(i64::MAX),
            RevokeReason::Logout,
            RevokeReason::Reuse,
            RevokeReason::Admin,
            RevokeReason::Idle
        )
        .await?;
        for (user_id, version) in versions {
            self.remember(user_id, version);
        }
        for (family_id, revoked_at) in sessions {
            self.remember_session(family_id, revoked_at);
        }
        Ok(())
    }

    /// Whether a token of `user_id` carrying `version` (and issued in `session`) is still
    /// good: the user exists and is enabled, the version is current, the session not revoked.
    pub async fn permits(
        &self,
        user_id: i64,
        version: i64,
        session: Option<&str>,
    ) -> sqlx::Result<bool> {
        if !self.memory_is_current() {
            return self.permits_by_database(user_id, version, session).await;
        }
        let Some(current) = self.current_version(user_id).await? else {
            return Ok(false);
        };
        if version < current {
            return Ok(false);
        }
        Ok(match session {
            None => true,
            Some(session) => !self
                .revoked_sessions
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(session),
        })
    }

    /// One instance: memory is always current. Several: only while the channel is confirmed.
    fn memory_is_current(&self) -> bool {
        self.channel
            .as_ref()
            .is_none_or(|channel| channel.is_fresh())
    }

    /// The same decision from the database alone (what memory holds may be stale).
    async fn permits_by_database(
        &self,
        user_id: i64,
        version: i64,
        session: Option<&str>,
    ) -> sqlx::Result<bool> {
        let Some(current) = self.stored_version(user_id).await? else {
            return Ok(false);
        };
        if version < self.remember(user_id, current) {
            return Ok(false);
        }
        let Some(session) = session else {
            return Ok(true);
        };
        match self.session_revoked_at(session).await? {
            Some(revoked_at) => {
                self.remember_session(session.to_owned(), revoked_at);
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// From memory, or else read from the database once; `None` if there is no such enabled
    /// user (not remembered: a user created later must not find a stale refusal here).
    async fn current_version(&self, user_id: i64) -> sqlx::Result<Option<i64>> {
        let known = self
            .token_versions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&user_id)
            .copied();
        if known.is_some() {
            return Ok(known);
        }
        let stored = self.stored_version(user_id).await?;
        Ok(stored.map(|version| self.remember(user_id, version)))
    }

    async fn stored_version(&self, user_id: i64) -> sqlx::Result<Option<i64>> {
        db::fetch_optional_scalar!(
            &mut self.db.read().await?,
            "SELECT token_version FROM users WHERE id = $1 AND NOT disabled",
            user_id
        )
        .await
    }

    /// When `family_id` was ended (logout, ended by its user or an administrator, reuse,
    /// idleness), if it was.
    async fn session_revoked_at(&self, family_id: &str) -> sqlx::Result<Option<i64>> {
        db::fetch_scalar!(
            &mut self.db.read().await?,
            "SELECT max(revoked_at) FROM refresh_tokens
             WHERE family_id = $1 AND revoked_reason IN ($2, $3, $4, $5)",
            family_id,
            RevokeReason::Logout,
            RevokeReason::Reuse,
            RevokeReason::Admin,
            RevokeReason::Idle
        )
        .await
    }

    /// Records a version already committed to the database, and tells the other instances.
    pub async fn set_version(&self, user_id: i64, version: i64) {
        self.remember(user_id, version);
        self.announce(Notice::TokenVersion { user_id }).await;
    }

    /// Versions only grow: a read that raced a bump must not lower what is known. Returns the
    /// version now known.
    fn remember(&self, user_id: i64, version: i64) -> i64 {
        let mut versions = self
            .token_versions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let known = versions.entry(user_id).or_insert(version);
        *known = (*known).max(version);
        *known
    }

    /// Records a session revocation already committed, and tells the other instances.
    pub async fn revoke_session(&self, family_id: &str) {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        self.remember_session(family_id.to_owned(), now);
        self.announce(Notice::Session {
            family_id: family_id.to_owned(),
        })
        .await;
    }

    fn remember_session(&self, family_id: String, revoked_at: i64) {
        let now = unix_now();
        let revoked_at = u64::try_from(revoked_at).unwrap_or(now);
        let mut sessions = self
            .revoked_sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, forget_after| *forget_after > now);
        sessions.insert(family_id, revoked_at + self.access_token_ttl_secs);
    }

    async fn announce(&self, notice: Notice) {
        if let Some(channel) = &self.channel {
            channel.publish(&notice).await;
        }
    }

    /// Several instances: follows the revocation channel for as long as the process runs
    /// (returns at once for a single instance). The film reads cached here ride the same
    /// channel: emptied whenever the revocations are re-read, forgotten when announced.
    pub async fn follow_broadcast(&self, reads: &ReadCache) {
        if let Some(channel) = &self.channel {
            let resync = || {
                reads.clear();
                self.resync()
            };
            channel
                .follow(resync, |notice| self.apply(notice, reads))
                .await;
        }
    }

    /// Another instance changed something: read it from the database.
    async fn apply(&self, notice: Notice, reads: &ReadCache) -> sqlx::Result<()> {
        match notice {
            Notice::Films(change) => reads.forget(&change),
            Notice::TokenVersion { user_id } => {
                let stored: Option<i64> = db::fetch_optional_scalar!(
                    &mut self.db.read().await?,
                    "SELECT token_version FROM users WHERE id = $1",
                    user_id
                )
                .await?;
                if let Some(version) = stored {
                    self.remember(user_id, version);
                }
            }
            Notice::Session { family_id } => {
                if let Some(revoked_at) = self.session_revoked_at(&family_id).await? {
                    self.remember_session(family_id, revoked_at);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with users 1 (enabled) and 2 (disabled), and the revocations read from it.
    async fn revocations() -> (tempfile::TempDir, Revocations) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let db = Database::connect(&url).await.unwrap();
        db::execute!(
            &mut db.write().await.unwrap(),
            "INSERT INTO users (id, username, email_index, password_hash, disabled)
             VALUES (1, 'one', X'01', 'x', 0), (2, 'two', X'02', 'x', 1)"
        )
        .await
        .unwrap();
        let revocations = Revocations::load(&db, 900, None).await.unwrap();
        (dir, revocations)
    }

    #[tokio::test]
    async fn an_older_token_version_is_refused_and_the_current_one_accepted() {
        let (_dir, revocations) = revocations().await;
        assert!(revocations.permits(1, 0, None).await.unwrap());
        revocations.set_version(1, 2).await;
        assert!(!revocations.permits(1, 1, None).await.unwrap());
        assert!(revocations.permits(1, 2, None).await.unwrap());
    }

    #[tokio::test]
    async fn a_known_version_never_goes_back() {
        let (_dir, revocations) = revocations().await;
        revocations.set_version(1, 3).await;
        revocations.set_version(1, 2).await;
        assert!(!revocations.permits(1, 2, None).await.unwrap());
    }

    #[tokio::test]
    async fn tokens_of_missing_or_disabled_users_are_refused() {
        let (_dir, revocations) = revocations().await;
        assert!(!revocations.permits(2, 0, None).await.unwrap(), "disabled");
        assert!(!revocations.permits(3, 0, None).await.unwrap(), "missing");
    }

    #[tokio::test]
    async fn a_revoked_session_refuses_its_tokens_only() {
        let (_dir, revocations) = revocations().await;
        revocations.revoke_session("family-a").await;
        assert!(!revocations.permits(1, 0, Some("family-a")).await.unwrap());
        assert!(revocations.permits(1, 0, Some("family-b")).await.unwrap());
    }
}
