-- The transactional outbox for mail (src/mail): a row is written in the same transaction as
-- the change that causes it, and the delivery worker sends it later, from any instance.
--
-- Recipient and body are sealed by the data keyring for this row (purposes
-- `mail_outbox.recipient:<id>` and `mail_outbox.body:<id>`: the row is inserted, then sealed,
-- in one transaction), since a body may carry a single-use token and no address is stored in
-- clear. Both are wiped once the mail is sent.
--
-- A worker claims a due row by setting `leased_until` (one UPDATE: the claim is atomic) and
-- counts the attempt at once; a worker that dies mid-send leaves a lease that expires, and
-- the row is claimed again.
CREATE TABLE mail_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    recipient_sealed BLOB,
    subject          TEXT    NOT NULL,
    body_sealed      BLOB,
    state            TEXT    NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'sent', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TEXT    NOT NULL,
    leased_until     TEXT,
    -- The SMTP server's answer or the connection error of the last failed attempt (no
    -- address, no body).
    last_error       TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    sent_at          TEXT,
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
) STRICT;

-- What the worker scans: the pending rows, oldest due first.
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX mail_outbox_by_state ON mail_outbox (state, id);
