-- Login sessions: one row per refresh-token family, for the owner to see and end them.
-- Times are unix seconds, like the refresh tokens' expiry.

CREATE TABLE sessions (
    -- The refresh-token family id (also the access token's `sid` claim).
    id           text   PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   bigint NOT NULL,
    -- Login, every refresh, and access-token use (written at most once per touch interval).
    last_used_at bigint NOT NULL,
    -- As seen at login, updated on refresh.
    ip           text,
    user_agent   text
);

CREATE INDEX sessions_by_user ON sessions (user_id);

INSERT INTO sessions (id, user_id, created_at, last_used_at)
SELECT family_id, min(user_id),
       extract(epoch FROM min(created_at))::bigint,
       extract(epoch FROM max(created_at))::bigint
FROM refresh_tokens GROUP BY family_id;

-- A session can now also end by idleness.
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_revoked_reason_check;
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_revoked_reason_check
    CHECK (revoked_reason IN
           ('rotated', 'reuse', 'logout', 'password_change', 'admin', 'disabled', 'idle'));
