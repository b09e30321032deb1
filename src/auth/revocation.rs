//! What makes an access token worthless before it expires, kept in memory so that checking it
//! costs two hash-map lookups instead of a database query on every request.
//!
//! * A user's token version is bumped (in the database, then here) when they are disabled,
//!   change role or change password: tokens carrying an older version are refused at once.
//! * A session (refresh-token family) is revoked on logout and on refresh-token reuse: access
//!   tokens issued in it are refused at once. An entry is kept only for one access-token
//!   lifetime, after which every token of that session has expired anyway.
//!
//! Both are loaded from the database at start, so a restart forgets nothing. One process holds
//! this state; several instances would share it through the database or a cache (see README).

use std::{
    collections::HashMap,
    sync::{PoisonError, RwLock},
};

use sqlx::SqlitePool;

use crate::auth::jwt::unix_now;

pub struct Revocations {
    token_versions: RwLock<HashMap<i64, i64>>,
    /// family id -> unix time after which the entry can be forgotten
    revoked_sessions: RwLock<HashMap<String, u64>>,
    access_token_ttl_secs: u64,
}

impl Revocations {
    pub async fn load(reader: &SqlitePool, access_token_ttl_secs: u64) -> sqlx::Result<Self> {
        let versions: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, token_version FROM users WHERE token_version > 0")
                .fetch_all(reader)
                .await?;
        let now = unix_now();
        let since = i64::try_from(now.saturating_sub(access_token_ttl_secs)).unwrap_or(i64::MAX);
        let sessions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT family_id, max(revoked_at) FROM refresh_tokens
             WHERE revoked_at >= ?1 AND revoked_reason IN ('logout', 'reuse')
             GROUP BY family_id",
        )
        .bind(since)
        .fetch_all(reader)
        .await?;
        Ok(Self {
            token_versions: RwLock::new(versions.into_iter().collect()),
            revoked_sessions: RwLock::new(
                sessions
                    .into_iter()
                    .map(|(family, at)| {
                        let at = u64::try_from(at).unwrap_or(now);
                        (family, at + access_token_ttl_secs)
                    })
                    .collect(),
            ),
            access_token_ttl_secs,
        })
    }

    /// Whether a token carrying `version` (and issued in `session`) is still good.
    pub fn permits(&self, user_id: i64, version: i64, session: Option<&str>) -> bool {
        let current = self
            .token_versions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&user_id)
            .copied()
            .unwrap_or(0);
        if version < current {
            return false;
        }
        match session {
            None => true,
            Some(session) => !self
                .revoked_sessions
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(session),
        }
    }

    /// Records a version already committed to the database.
    pub fn set_version(&self, user_id: i64, version: i64) {
        self.token_versions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user_id, version);
    }

    pub fn revoke_session(&self, family_id: &str) {
        let now = unix_now();
        let mut sessions = self
            .revoked_sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, forget_after| *forget_after > now);
        sessions.insert(family_id.to_owned(), now + self.access_token_ttl_secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Revocations {
        Revocations {
            token_versions: RwLock::default(),
            revoked_sessions: RwLock::default(),
            access_token_ttl_secs: 900,
        }
    }

    #[test]
    fn an_older_token_version_is_refused_and_the_current_one_accepted() {
        let revocations = empty();
        assert!(revocations.permits(1, 0, None));
        revocations.set_version(1, 2);
        assert!(!revocations.permits(1, 1, None));
        assert!(revocations.permits(1, 2, None));
        assert!(
            revocations.permits(2, 0, None),
            "other users are unaffected"
        );
    }

    #[test]
    fn a_revoked_session_refuses_its_tokens_only() {
        let revocations = empty();
        revocations.revoke_session("family-a");
        assert!(!revocations.permits(1, 0, Some("family-a")));
        assert!(revocations.permits(1, 0, Some("family-b")));
    }
}
