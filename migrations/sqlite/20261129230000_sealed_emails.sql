-- Emails at rest: sealed (AES-256-GCM under DATA_ENCRYPTION_KEY, src/crypto), looked up and
-- kept unique through a keyed blind index (an HMAC of the address's comparison form). SQL
-- cannot encrypt: this migration moves each stored address to `legacy_email`, and the
-- service seals it at its next start, in batches, and empties the column
-- (src/domain/email.rs). A later release drops `legacy_email`.
--
-- SQLite cannot take NOT NULL or UNIQUE off a column: the table is rebuilt, the way
-- https://www.sqlite.org/lang_altertable.html#otheralter describes (the migrator turns
-- foreign keys off around the migrations and checks them all before it commits, so the DROP
-- cascades to nothing). The view on users goes and comes back with it.

DROP VIEW film_view;

CREATE TABLE users_sealed (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NOCASE: "Alice" and "alice" are the same account; no look-alike registration.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    -- The address in its normal form (`Email`), sealed with the data key it names, for this
    -- row (the sealing binds the row id, so registration inserts, then seals: two statements
    -- of one transaction, and no NOT NULL).
    email_sealed  BLOB,
    -- HMAC of the lower-cased normal form under the same key: equal addresses, in any case,
    -- have equal indexes. NULL only for an old look-alike of another account's address.
    email_index   BLOB    UNIQUE,
    -- An address from before sealing, until the service seals it; then NULL.
    legacy_email  TEXT,
    -- Argon2id PHC string; never selected into anything that is serialized.
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- Bumped on disable, role change and password change: access tokens carry it, and a
    -- token with an older value is refused at once.
    token_version INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

INSERT INTO users_sealed (id, username, legacy_email, password_hash, role, disabled,
                          token_version, created_at, updated_at)
SELECT id, username, email, password_hash, role, disabled, token_version, created_at, updated_at
FROM users;

-- Ids are never reused: the new table continues the old one's sequence.
UPDATE sqlite_sequence
SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'users'))
WHERE name = 'users_sealed';

DROP TABLE users;
ALTER TABLE users_sealed RENAME TO users;

-- A film as the API shows it: the owner's username instead of their id.
CREATE VIEW film_view AS
SELECT f.id, f.name, f.studio, f.year, u.username AS owner, f.owner_id,
       f.likes, f.dislikes, f.created_at, f.updated_at
FROM films f
LEFT JOIN users u ON u.id = f.owner_id;
