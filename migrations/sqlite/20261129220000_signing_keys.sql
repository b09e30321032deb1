-- Access-token signing keys (Ed25519). Every instance signs with the key whose
-- current_signer is 1; the UNIQUE constraint allows one such row (NULLs are distinct), so
-- instances starting together on an empty table create one key between them.
--
-- private_key is the PKCS#8 document sealed by the data keyring (purpose
-- `signing_keys.private_key:<kid>`); it is wiped when the key retires, since verifying what
-- the key signed needs only public_key. A retired key is published and verifies until the
-- tokens it signed have expired (retired_at + the access-token lifetime), then is deleted.
-- Times are Unix seconds.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    public_key     BLOB NOT NULL CHECK (length(public_key) = 32),
    private_key    BLOB,
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER,
    current_signer INTEGER UNIQUE CHECK (current_signer = 1),
    CHECK ((current_signer IS NULL) = (retired_at IS NOT NULL)),
    CHECK (retired_at IS NULL OR private_key IS NULL)
) STRICT;
