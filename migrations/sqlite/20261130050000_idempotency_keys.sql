-- Idempotency-Key (src/web/idempotency.rs): the first answer to a keyed POST, kept 24 hours so
-- a retry gets it again instead of creating a second film. Keys are per caller: the same key
-- from two users is two rows. Times are unix seconds.

CREATE TABLE idempotency_keys (
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idem_key     TEXT    NOT NULL,
    -- SHA-256 of the route and the parsed request: the same key with another request is 422.
    fingerprint  BLOB    NOT NULL,
    -- Random per claim: only the request that claimed the key may record its answer, even if
    -- its claim went stale and was taken over.
    claim_token  BLOB    NOT NULL,
    claimed_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- NULL while the first request is in flight; then its answer.
    status       INTEGER,
    -- JSON array of [name, value] pairs (Location, ETag, Content-Type).
    headers      TEXT,
    body         BLOB,
    PRIMARY KEY (user_id, idem_key)
) STRICT;

CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
