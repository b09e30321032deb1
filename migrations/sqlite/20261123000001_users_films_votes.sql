-- Users, films and votes. STRICT tables: SQLite enforces the declared column types.
-- AUTOINCREMENT: an id is never reused after a delete, so audit records and old links
-- can never point at a different row.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NOCASE: "Alice" and "alice" are the same account; no look-alike registration.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
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

CREATE TABLE films (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    studio     TEXT    NOT NULL,
    year       INTEGER,
    -- NULL: the curated catalogue, editable only by admins.
    owner_id   INTEGER REFERENCES users (id) ON DELETE SET NULL,
    -- Maintained by the triggers on votes, in the same transaction as the vote.
    likes      INTEGER NOT NULL DEFAULT 0 CHECK (likes >= 0),
    dislikes   INTEGER NOT NULL DEFAULT 0 CHECK (dislikes >= 0),
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX films_by_owner ON films (owner_id);

-- One vote per user per film: voting again changes the vote, it never adds one.
CREATE TABLE votes (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    film_id    INTEGER NOT NULL REFERENCES films (id) ON DELETE CASCADE,
    value      INTEGER NOT NULL CHECK (value IN (-1, 1)),
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, film_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX votes_by_film ON votes (film_id);

CREATE TRIGGER votes_count_insert AFTER INSERT ON votes
BEGIN
    UPDATE films
    SET likes = likes + (NEW.value = 1), dislikes = dislikes + (NEW.value = -1)
    WHERE id = NEW.film_id;
END;

CREATE TRIGGER votes_count_update AFTER UPDATE OF value ON votes
WHEN OLD.value <> NEW.value
BEGIN
    UPDATE films
    SET likes = likes + (NEW.value = 1) - (OLD.value = 1),
        dislikes = dislikes + (NEW.value = -1) - (OLD.value = -1)
    WHERE id = NEW.film_id;
END;

CREATE TRIGGER votes_count_delete AFTER DELETE ON votes
BEGIN
    UPDATE films
    SET likes = likes - (OLD.value = 1), dislikes = dislikes - (OLD.value = -1)
    WHERE id = OLD.film_id;
END;

-- A film as the API shows it: the owner's username instead of their id.
CREATE VIEW film_view AS
SELECT f.id, f.name, f.studio, f.year, u.username AS owner, f.owner_id,
       f.likes, f.dislikes, f.created_at, f.updated_at
FROM films f
LEFT JOIN users u ON u.id = f.owner_id;
