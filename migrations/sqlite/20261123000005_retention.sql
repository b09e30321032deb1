-- Retention: the pruning task deletes audit events older than AUDIT_RETENTION_DAYS, and the
-- table stays append-only for everything younger. The retention is stored here (the service
-- writes its configured value before each pruning), so the delete trigger can check it: a
-- DELETE that reaches a younger event fails whole, whoever runs it. Updates stay refused.
--
-- Like the triggers before, this guards the trail against the statements the service runs,
-- not against someone who can run any SQL on the file (they could drop a trigger): shipping
-- the logs and the audit trail elsewhere is what covers that.

CREATE TABLE audit_retention (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    days INTEGER NOT NULL CHECK (days >= 1)
) STRICT;

INSERT INTO audit_retention (id, days) VALUES (1, 365);

DROP TRIGGER audit_events_no_delete;

-- Without a retention row (or with anything that makes the cutoff NULL) nothing is deletable.
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT coalesce(
    old.occurred_at < (SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || days || ' days')
                       FROM audit_retention WHERE id = 1),
    0)
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only until their retention ends');
END;
