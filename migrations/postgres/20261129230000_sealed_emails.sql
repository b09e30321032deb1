-- Emails at rest: sealed (AES-256-GCM under DATA_ENCRYPTION_KEY, src/crypto), looked up and
-- kept unique through a keyed blind index (an HMAC of the address's comparison form). SQL
-- cannot encrypt: this migration moves each stored address to `legacy_email`, and the
-- service seals it at its next start, in batches, and empties the column
-- (src/domain/email.rs). A later release drops `legacy_email`.

ALTER TABLE users RENAME COLUMN email TO legacy_email;
ALTER TABLE users ALTER COLUMN legacy_email DROP NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_email_key;

-- The address in its normal form (`Email`), sealed with the data key it names, for this row
-- (the sealing binds the row id, so registration inserts, then seals: two statements of one
-- transaction, and no NOT NULL); and the HMAC of its lower-cased normal form under the same
-- key: equal addresses, in any case, have equal indexes. The index is NULL only for an old
-- look-alike of another account's address.
ALTER TABLE users
    ADD COLUMN email_sealed bytea,
    ADD COLUMN email_index  bytea UNIQUE;
