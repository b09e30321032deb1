-- Every index is written on every insert; these two were paid for on each film creation and
-- each audit event without a query that needs them (found by the write benchmark: together
-- about 7 % of a film creation).
--
-- films_by_owner: nothing looks films up by owner (authorization loads a film by id). The
-- foreign key's ON DELETE SET NULL would scan films if a user were deleted; users are
-- disabled, never deleted.
DROP INDEX films_by_owner;

-- audit_events_by_time: the admin endpoint orders by id (which grows with time) and stops
-- after one page, so a time window alone scans from the newest row back; actor and action
-- filters keep their (…, occurred_at) indexes.
DROP INDEX audit_events_by_time;
