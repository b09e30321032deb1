-- Email verification and password reset (src/auth/account_tokens.rs).
--
-- `email_verified_at`: when the owner proved they read mail at the account's address. Accounts
-- from before this migration have not: with REQUIRE_EMAIL_VERIFICATION they ask for a new
-- link (`POST /auth/verify-email/resend`) before they can log in (docs/security.md).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- The tokens mailed in links. Only a SHA-256 of each is stored: the token carries 256 random
-- bits, so a fast hash is enough and the table gives an attacker nothing to log in with.
CREATE TABLE account_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       text   NOT NULL CHECK (purpose IN ('email_verification', 'password_reset')),
    token_hash    bytea  NOT NULL UNIQUE,
    -- A reset token is good only while the account's token version is this one: any password
    -- change (or disable, or role change) bumps it. NULL for verification tokens.
    token_version bigint,
    -- Unix seconds.
    created_at    bigint NOT NULL,
    expires_at    bigint NOT NULL,
    -- Used, or superseded by a newer token of the same purpose: never good again.
    spent_at      bigint
);

-- The per-account mail budget counts recent tokens; issuing one spends the older ones.
CREATE INDEX account_tokens_by_user ON account_tokens (user_id, purpose, created_at);
