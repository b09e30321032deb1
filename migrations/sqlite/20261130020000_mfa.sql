-- A second factor: TOTP (RFC 6238) with single-use recovery codes, and the short-lived
-- challenge that stands between a correct password and a session (src/auth/mfa/).
-- Times are unix seconds.

-- One authenticator per account. Pending until `confirmed_at` is set by a first right code.
CREATE TABLE totp_credentials (
    user_id        INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- Sealed with the data keyring (AES-256-GCM, bound to this row): never in clear.
    secret_sealed  BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    confirmed_at   INTEGER,
    -- The newest time step accepted: a code of this step or an older one is never taken again.
    last_used_step INTEGER
) STRICT;

-- Only a SHA-256 of each code: a code carries 80 random bits, so a fast hash is enough.
-- A used code is deleted.
CREATE TABLE recovery_codes (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BLOB    NOT NULL
) STRICT;

CREATE INDEX recovery_codes_by_user ON recovery_codes (user_id);

-- A correct password of an account with MFA: the `mfa_token` the second step presents,
-- stored as its SHA-256; deleted when used, and dead after 5 wrong codes or at `expires_at`.
CREATE TABLE mfa_challenges (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    BLOB    NOT NULL UNIQUE,
    -- The account's token version when the password was checked: a password change, disable
    -- or role change in between kills the challenge.
    token_version INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    failed_codes  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX mfa_challenges_by_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (expires_at);
