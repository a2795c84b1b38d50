"""Re-encrypt stored keys under the newest master key (`python -m settings_svc rotate-keys`).

Each row is re-encrypted in its own transaction under a row lock and only if it is still under an
older master key, so the command can be interrupted, rerun, or run on two machines at once.
A row's fingerprint is keyed by its master key, so it is recomputed with the re-encryption; rows
without a fingerprint (stored before fingerprints were keyed) get one even if already current.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from settings_svc.keystore import KeyRing, UndecryptableKey, associated_data

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RotationResult:
    rotated: int
    failed: int
    # Rows already under the newest master key that only lacked a fingerprint.
    fingerprinted: int = 0


_BATCH = """
SELECT user_id, backend_type FROM settings.api_keys
WHERE (key_id <> $1 OR fingerprint = '') AND (user_id, backend_type) > ($2, $3)
ORDER BY user_id, backend_type
LIMIT $4
"""

_LOCK_ROW = """
SELECT provider, key_id, nonce, ciphertext FROM settings.api_keys
WHERE user_id = $1 AND backend_type = $2 AND (key_id <> $3 OR fingerprint = '')
FOR UPDATE
"""


async def rotate_keys(
    pool: asyncpg.Pool, keyring: KeyRing, batch_size: int = 200
) -> RotationResult:
    newest = keyring.newest_id
    rotated = failed = fingerprinted = 0
    after = ("", "")
    async with pool.acquire() as conn:
        while True:
            batch = await conn.fetch(_BATCH, newest, after[0], after[1], batch_size)
            if not batch:
                break
            for item in batch:
                user_id, backend_type = item["user_id"], item["backend_type"]
                async with conn.transaction():
                    row = await conn.fetchrow(_LOCK_ROW, user_id, backend_type, newest)
                    if row is None:  # rotated or deleted meanwhile
                        continue
                    aad = associated_data(user_id, backend_type, row["provider"])
                    try:
                        plaintext = keyring.decrypt(
                            row["key_id"], row["nonce"], row["ciphertext"], aad
                        )
                    except UndecryptableKey as err:
                        failed += 1
                        log.error(
                            "cannot rotate the %s key: %s",
                            backend_type,
                            err,
                            extra={"user_id": user_id},
                        )
                        continue
                    if row["key_id"] == newest:
                        await conn.execute(
                            "UPDATE settings.api_keys SET fingerprint = $3"
                            " WHERE user_id = $1 AND backend_type = $2",
                            user_id,
                            backend_type,
                            keyring.fingerprint(newest, user_id, plaintext),
                        )
                        fingerprinted += 1
                        continue
                    encrypted = keyring.encrypt(plaintext, aad)
                    await conn.execute(
                        "UPDATE settings.api_keys SET key_id = $3, nonce = $4, ciphertext = $5,"
                        " fingerprint = $6 WHERE user_id = $1 AND backend_type = $2",
                        user_id,
                        backend_type,
                        encrypted.key_id,
                        encrypted.nonce,
                        encrypted.ciphertext,
                        keyring.fingerprint(encrypted.key_id, user_id, plaintext),
                    )
                    rotated += 1
            after = (batch[-1]["user_id"], batch[-1]["backend_type"])
    log.info(
        "key rotation to %r: %d rotated, %d failed, %d fingerprints computed",
        newest,
        rotated,
        failed,
        fingerprinted,
    )
    return RotationResult(rotated, failed, fingerprinted)
