-- The schema the SQLite migrations arrive at (migrations/sqlite, up to this version), in
-- PostgreSQL's own types: bigint identities, boolean, bytea, timestamptz. From here on every
-- change of the schema is one migration per backend, under the same version and name.
--
-- Ids come from identities that are never reused (as SQLite's AUTOINCREMENT): audit records
-- and old links can never point at a different row after a delete.

-- "Alice" and "alice" are one account, as with SQLite's COLLATE NOCASE. A nondeterministic ICU
-- collation at strength 2 compares without case, so the UNIQUE constraints and the `=` of
-- every lookup need no lower() and no extension. Usernames are ASCII and emails are stored in
-- NFKC form, so this agrees with NOCASE on every value the service stores.
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

CREATE TABLE users (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        COLLATE case_insensitive NOT NULL UNIQUE,
    email         text        COLLATE case_insensitive NOT NULL UNIQUE,
    -- Argon2id PHC string; never selected into anything that is serialized.
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled      boolean     NOT NULL DEFAULT false,
    -- Bumped on disable, role change and password change: access tokens carry it, and a
    -- token with an older value is refused at once.
    token_version bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE films (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL,
    studio     text        NOT NULL,
    year       bigint,
    -- NULL: the curated catalogue, editable only by admins.
    owner_id   bigint      REFERENCES users (id) ON DELETE SET NULL,
    -- Maintained by the trigger on votes, in the same transaction as the vote.
    likes      bigint      NOT NULL DEFAULT 0 CHECK (likes >= 0),
    dislikes   bigint      NOT NULL DEFAULT 0 CHECK (dislikes >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One vote per user per film: voting again changes the vote, it never adds one.
CREATE TABLE votes (
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    film_id    bigint      NOT NULL REFERENCES films (id) ON DELETE CASCADE,
    value      smallint    NOT NULL CHECK (value IN (-1, 1)),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, film_id)
);

CREATE INDEX votes_by_film ON votes (film_id);

-- The counters move by the difference each vote makes, never by a recount: the UPDATE takes
-- the film's row lock, so concurrent votes on one film, from any instance, queue on that row
-- and each adds exactly its own difference.
CREATE FUNCTION votes_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE films
        SET likes = likes + (NEW.value = 1)::int, dislikes = dislikes + (NEW.value = -1)::int
        WHERE id = NEW.film_id;
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE films
        SET likes = likes + (NEW.value = 1)::int - (OLD.value = 1)::int,
            dislikes = dislikes + (NEW.value = -1)::int - (OLD.value = -1)::int
        WHERE id = NEW.film_id;
    ELSE
        UPDATE films
        SET likes = likes - (OLD.value = 1)::int, dislikes = dislikes - (OLD.value = -1)::int
        WHERE id = OLD.film_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER votes_count_insert AFTER INSERT ON votes
FOR EACH ROW EXECUTE FUNCTION votes_count();

CREATE TRIGGER votes_count_update AFTER UPDATE OF value ON votes
FOR EACH ROW WHEN (OLD.value <> NEW.value) EXECUTE FUNCTION votes_count();

CREATE TRIGGER votes_count_delete AFTER DELETE ON votes
FOR EACH ROW EXECUTE FUNCTION votes_count();

-- A film as the API shows it: the owner's username instead of their id.
CREATE VIEW film_view AS
SELECT f.id, f.name, f.studio, f.year, u.username AS owner, f.owner_id,
       f.likes, f.dislikes, f.created_at, f.updated_at
FROM films f
LEFT JOIN users u ON u.id = f.owner_id;

-- Refresh tokens and API keys. Neither is stored in the clear: only a SHA-256 of the
-- secret (both carry 256 random bits, so a fast hash is enough; nothing can be guessed).

CREATE TABLE refresh_tokens (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- One family per login; every rotation stays in it. Reuse of a rotated token revokes
    -- the whole family.
    family_id      text        NOT NULL,
    token_hash     bytea       NOT NULL UNIQUE,
    -- Unix seconds. A family expires at login + REFRESH_TOKEN_TTL_SECS: rotation does not
    -- extend it, so a user re-authenticates at least that often.
    expires_at     bigint      NOT NULL,
    revoked_at     bigint,
    revoked_reason text CHECK (revoked_reason IN
                       ('rotated', 'reuse', 'logout', 'password_change', 'admin', 'disabled')),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

CREATE TABLE api_keys (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    -- Public part of the key (`fk_<prefix>_<secret>`): finds the row, proves nothing.
    prefix       text        NOT NULL UNIQUE,
    key_hash     bytea       NOT NULL,
    can_read     boolean     NOT NULL,
    can_write    boolean     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE INDEX api_keys_by_user ON api_keys (user_id);

-- The audit trail: who did what to what, from where, with what outcome.

CREATE TABLE audit_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    request_id  text,
    -- No foreign key: the trail outlives the accounts it mentions.
    actor_id    bigint,
    client_ip   text,
    action      text        NOT NULL,
    target      text,
    outcome     text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    reason      text
);

CREATE INDEX audit_events_by_actor ON audit_events (actor_id, occurred_at);
CREATE INDEX audit_events_by_action ON audit_events (action, occurred_at);

-- Retention: the pruning task deletes audit events older than AUDIT_RETENTION_DAYS, and the
-- table stays append-only for everything younger. The retention is stored here (the service
-- writes its configured value before each pruning), so the trigger can check it: a DELETE
-- that reaches a younger event fails whole, whoever runs it. Updates stay refused, and so
-- does TRUNCATE, which would bypass row triggers.
--
-- This guards the trail against the statements the service runs, not against a role that can
-- drop a trigger: shipping the logs and the audit trail elsewhere is what covers that.

CREATE TABLE audit_retention (
    id   smallint PRIMARY KEY CHECK (id = 1),
    days bigint   NOT NULL CHECK (days >= 1)
);

INSERT INTO audit_retention (id, days) VALUES (1, 365);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Without a retention row (or with anything that makes the cutoff NULL) nothing is
    -- deletable.
    IF TG_OP = 'DELETE' AND coalesce(
        OLD.occurred_at < now() - (SELECT make_interval(days => days::int)
                                   FROM audit_retention WHERE id = 1),
        false)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only until their retention ends';
END
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
