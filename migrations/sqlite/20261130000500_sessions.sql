-- Login sessions: one row per refresh-token family, for the owner to see and end them.
-- Times are unix seconds, like the refresh tokens' expiry.

CREATE TABLE sessions (
    -- The refresh-token family id (also the access token's `sid` claim).
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    -- Login, every refresh, and access-token use (written at most once per touch interval).
    last_used_at INTEGER NOT NULL,
    -- As seen at login, updated on refresh.
    ip           TEXT,
    user_agent   TEXT
) STRICT;

CREATE INDEX sessions_by_user ON sessions (user_id);

INSERT INTO sessions (id, user_id, created_at, last_used_at)
SELECT family_id, min(user_id),
       CAST(strftime('%s', min(created_at)) AS INTEGER),
       CAST(strftime('%s', max(created_at)) AS INTEGER)
FROM refresh_tokens GROUP BY family_id;

-- A session can now also end by idleness ('idle'). SQLite cannot change a CHECK constraint
-- in place: the table is rebuilt (nothing references it).
CREATE TABLE refresh_tokens_new (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id      TEXT    NOT NULL,
    token_hash     BLOB    NOT NULL UNIQUE,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT CHECK (revoked_reason IN
                       ('rotated', 'reuse', 'logout', 'password_change', 'admin', 'disabled',
                        'idle')),
    created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

INSERT INTO refresh_tokens_new
    (id, user_id, family_id, token_hash, expires_at, revoked_at, revoked_reason, created_at)
SELECT id, user_id, family_id, token_hash, expires_at, revoked_at, revoked_reason, created_at
FROM refresh_tokens;

DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
