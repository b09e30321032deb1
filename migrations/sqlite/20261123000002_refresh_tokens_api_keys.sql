-- Refresh tokens and API keys. Neither is stored in the clear: only a SHA-256 of the
-- secret (both carry 256 random bits, so a fast hash is enough; nothing can be guessed).

CREATE TABLE refresh_tokens (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- One family per login; every rotation stays in it. Reuse of a rotated token revokes
    -- the whole family.
    family_id      TEXT    NOT NULL,
    token_hash     BLOB    NOT NULL UNIQUE,
    -- Unix seconds. A family expires at login + REFRESH_TOKEN_TTL_SECS: rotation does not
    -- extend it, so a user re-authenticates at least that often.
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT CHECK (revoked_reason IN
                       ('rotated', 'reuse', 'logout', 'password_change', 'admin', 'disabled')),
    created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    -- Public part of the key (`fk_<prefix>_<secret>`): finds the row, proves nothing.
    prefix       TEXT    NOT NULL UNIQUE,
    key_hash     BLOB    NOT NULL,
    can_read     INTEGER NOT NULL CHECK (can_read IN (0, 1)),
    can_write    INTEGER NOT NULL CHECK (can_write IN (0, 1)),
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;

CREATE INDEX api_keys_by_user ON api_keys (user_id);
