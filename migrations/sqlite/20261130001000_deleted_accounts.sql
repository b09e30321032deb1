-- Deleted accounts stay as tombstones: the row keeps its id (for the audit trail and for the
-- token-version revocation every instance already follows), loses everything personal (email,
-- password hash, username: see src/domain/account_deletion.rs), and is marked here. No query
-- that serves an account reads a row with `deleted_at` set.
ALTER TABLE users ADD COLUMN deleted_at TEXT;

-- A deletion hands the account's films to the catalogue (owner_id = NULL): found by owner.
-- Dropped earlier as a write-path cost no query needed; without it every deletion would scan
-- films while holding the write lock (on SQLite, every other writer's), at the price of one
-- account's request. Curated films (no owner) stay out of it.
CREATE INDEX films_by_owner ON films (owner_id) WHERE owner_id IS NOT NULL;
