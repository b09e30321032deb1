-- Email change, tokens bound to an address, mail by account, known sign-in clients
-- (issue 16: src/domain/user/email_change.rs, src/auth/account_tokens.rs, src/auth/sign_ins.rs).

-- A mailed token is bound to the address it was mailed to (`email_sealed`, sealed for the
-- token: purpose `account_tokens.email:<token_hash>`): a verification link for one address
-- never verifies another, and an email-change token carries the new address it confirms.
-- Tokens issued before this migration are bound to nothing and are refused: their owners ask
-- for a new link. SQLite cannot change a CHECK constraint in place: the table is rebuilt
-- (nothing references it).
CREATE TABLE account_tokens_new (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       TEXT    NOT NULL CHECK (purpose IN ('email_verification', 'password_reset',
                                                      'email_change')),
    token_hash    BLOB    NOT NULL UNIQUE,
    -- A reset or email-change token is good only while the account's token version is this
    -- one: any password change (or disable, or role change) bumps it. NULL for verification.
    token_version INTEGER,
    -- Unix seconds.
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    -- Used, or superseded by a newer token of the same purpose: never good again.
    spent_at      INTEGER,
    email_sealed  BLOB
) STRICT;

INSERT INTO account_tokens_new
    (id, user_id, purpose, token_hash, token_version, created_at, expires_at, spent_at)
SELECT id, user_id, purpose, token_hash, token_version, created_at, expires_at, spent_at
FROM account_tokens;

DROP TABLE account_tokens;
ALTER TABLE account_tokens_new RENAME TO account_tokens;
CREATE INDEX account_tokens_by_user ON account_tokens (user_id, purpose, created_at);

-- The account a mail is about, so that deleting the account removes its unsent mails.
ALTER TABLE mail_outbox ADD COLUMN user_id INTEGER REFERENCES users (id);
CREATE INDEX mail_outbox_unsent_by_user ON mail_outbox (user_id) WHERE state <> 'sent';

-- The clients (IP address and user agent) each account has signed in from: a sign-in from
-- one not seen before mails a notice. Only a keyed blind index of the pair is stored
-- (purpose `known_sign_ins.client`), never the address or the agent.
CREATE TABLE known_sign_ins (
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_index  BLOB    NOT NULL,
    -- Unix seconds.
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_index)
) STRICT;
