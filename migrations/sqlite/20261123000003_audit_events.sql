-- The audit trail: who did what to what, from where, with what outcome. Append-only: the
-- triggers below refuse updates and deletes, so a compromised request path cannot rewrite
-- history through this connection.

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    occurred_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    request_id  TEXT,
    -- No foreign key: the trail outlives the accounts it mentions.
    actor_id    INTEGER,
    client_ip   TEXT,
    action      TEXT    NOT NULL,
    target      TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    reason      TEXT
) STRICT;

CREATE INDEX audit_events_by_time ON audit_events (occurred_at);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, occurred_at);
CREATE INDEX audit_events_by_action ON audit_events (action, occurred_at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
