-- Fingerprints stored before this migration are sha256(key) truncated: anyone who can read this
-- table could confirm a guessed key, and match equal keys across users. Drop them now rather than
-- wait for a recompute, which needs the plaintext (so the master keys) and runs in the service:
-- an empty fingerprint is computed, keyed, on the next read of the row, and by `rotate-keys`.
UPDATE api_keys SET fingerprint = '' WHERE fingerprint <> '';
