-- Email change, tokens bound to an address, mail by account, known sign-in clients
-- (issue 16: src/domain/user/email_change.rs, src/auth/account_tokens.rs, src/auth/sign_ins.rs).

-- A mailed token is bound to the address it was mailed to (`email_sealed`, sealed for the
-- token: purpose `account_tokens.email:<token_hash>`): a verification link for one address
-- never verifies another, and an email-change token carries the new address it confirms.
-- Tokens issued before this migration are bound to nothing and are refused: their owners ask
-- for a new link. A reset or email-change token carries the account's token version.
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('email_verification', 'password_reset', 'email_change'));
ALTER TABLE account_tokens ADD COLUMN email_sealed bytea;

-- The account a mail is about, so that deleting the account removes its unsent mails.
ALTER TABLE mail_outbox ADD COLUMN user_id bigint REFERENCES users (id);
CREATE INDEX mail_outbox_unsent_by_user ON mail_outbox (user_id) WHERE state <> 'sent';

-- The clients (IP address and user agent) each account has signed in from: a sign-in from
-- one not seen before mails a notice. Only a keyed blind index of the pair is stored
-- (purpose `known_sign_ins.client`), never the address or the agent.
CREATE TABLE known_sign_ins (
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_index  bytea  NOT NULL,
    -- Unix seconds.
    first_seen_at bigint NOT NULL,
    last_seen_at  bigint NOT NULL,
    PRIMARY KEY (user_id, client_index)
);
