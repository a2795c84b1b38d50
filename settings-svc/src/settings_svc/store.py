"""Postgres access for configs and keys (schema `settings`); parameterised queries only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from settings_svc.environment import Settings
from settings_svc.keystore import EncryptedKey

SCHEMA = "settings"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        format="text",
    )


async def create_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=min(settings.db_pool_min_size, settings.db_pool_max_size),
        max_size=settings.db_pool_max_size,
        init=_init_connection,
        command_timeout=30,
        server_settings={"application_name": "settings-svc"},
    )
    assert pool is not None
    return pool


@dataclass(frozen=True, slots=True)
class StoredConfig:
    provider: str
    model: str
    temperature: float | None
    mode: str
    options: dict[str, str]
    base_url: str
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredKey:
    provider: str
    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class KeyInfo:
    provider: str
    hint: str
    fingerprint: str
    # Only when the fingerprint is still to be computed (''): the sealed key it is computed from.
    sealed: StoredKey | None = None


@dataclass(frozen=True, slots=True)
class ConfigNewValues:
    provider: str
    model: str
    temperature: float | None
    mode: str
    options: dict[str, str]
    base_url: str


def _config(row: asyncpg.Record) -> StoredConfig | None:
    if row["version"] is None:
        return None
    return StoredConfig(
        provider=row["provider"],
        model=row["model"],
        temperature=row["temperature"],
        mode=row["mode"],
        options=dict(row["options"]),
        base_url=row["base_url"],
        version=row["version"],
        updated_at=row["updated_at"],
    )


_CONFIG_COLUMNS = "provider, model, temperature, mode, options, base_url, version, updated_at"

# One row per requested backend type, whether or not the user saved a config or a key for it.
_VIEW = """
SELECT want.backend_type,
       c.provider, c.model, c.temperature, c.mode, c.options, c.base_url, c.version, c.updated_at,
       k.provider AS key_provider, k.hint AS key_hint, k.fingerprint AS key_fingerprint,
       -- The sealed key only where its fingerprint is missing (rows stored before fingerprints
       -- were keyed): the service computes it once and stores it (set_fingerprint).
       CASE WHEN k.fingerprint = '' THEN k.key_id END AS key_id,
       CASE WHEN k.fingerprint = '' THEN k.nonce END AS key_nonce,
       CASE WHEN k.fingerprint = '' THEN k.ciphertext END AS key_ciphertext
FROM unnest($2::text[]) AS want(backend_type)
LEFT JOIN settings.backend_configs c ON c.user_id = $1 AND c.backend_type = want.backend_type
LEFT JOIN settings.api_keys k ON k.user_id = $1 AND k.backend_type = want.backend_type
"""

_RESOLVE = """
SELECT c.provider, c.model, c.temperature, c.mode, c.options, c.base_url, c.version, c.updated_at,
       k.provider AS key_provider, k.key_id, k.nonce, k.ciphertext
FROM (SELECT 1) AS one
LEFT JOIN settings.backend_configs c ON c.user_id = $1 AND c.backend_type = $2
LEFT JOIN settings.api_keys k ON k.user_id = $1 AND k.backend_type = $2
"""

_UPSERT = f"""
INSERT INTO settings.backend_configs AS c
    (user_id, backend_type, provider, model, temperature, mode, options, base_url, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nextval('settings.config_version_seq'))
ON CONFLICT (user_id, backend_type) DO UPDATE SET
    provider = EXCLUDED.provider, model = EXCLUDED.model, temperature = EXCLUDED.temperature,
    mode = EXCLUDED.mode, options = EXCLUDED.options, base_url = EXCLUDED.base_url,
    version = EXCLUDED.version, updated_at = now()
RETURNING {_CONFIG_COLUMNS}
"""

# expected_version 0: only if the user has never saved (or has deleted) this config.
_INSERT_NEW = f"""
INSERT INTO settings.backend_configs
    (user_id, backend_type, provider, model, temperature, mode, options, base_url, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nextval('settings.config_version_seq'))
ON CONFLICT (user_id, backend_type) DO NOTHING
RETURNING {_CONFIG_COLUMNS}
"""

# The version check and the bump are one statement: of two concurrent writers holding the same
# version, the second waits for the first's row lock, re-reads the row and matches nothing.
_UPDATE_IF_VERSION = f"""
UPDATE settings.backend_configs SET
    provider = $3, model = $4, temperature = $5, mode = $6, options = $7, base_url = $8,
    version = nextval('settings.config_version_seq'), updated_at = now()
WHERE user_id = $1 AND backend_type = $2 AND version = $9
RETURNING {_CONFIG_COLUMNS}
"""


class ConfigStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def view(
        self, user_id: str, backend_types: list[str]
    ) -> dict[str, tuple[StoredConfig | None, KeyInfo | None]]:
        rows = await self.pool.fetch(_VIEW, user_id, backend_types)
        result: dict[str, tuple[StoredConfig | None, KeyInfo | None]] = {}
        for row in rows:
            key = None
            if row["key_provider"] is not None:
                sealed = None
                if row["key_id"] is not None:
                    sealed = StoredKey(
                        row["key_provider"], row["key_id"], row["key_nonce"], row["key_ciphertext"]
                    )
                key = KeyInfo(row["key_provider"], row["key_hint"], row["key_fingerprint"], sealed)
            result[row["backend_type"]] = (_config(row), key)
        return result

    async def for_resolve(
        self, user_id: str, backend_type: str
    ) -> tuple[StoredConfig | None, StoredKey | None]:
        row = await self.pool.fetchrow(_RESOLVE, user_id, backend_type)
        assert row is not None
        key = None
        if row["key_provider"] is not None:
            key = StoredKey(row["key_provider"], row["key_id"], row["nonce"], row["ciphertext"])
        return _config(row), key

    async def put(
        self, user_id: str, backend_type: str, values: ConfigNewValues, expected_version: int
    ) -> StoredConfig | None:
        """The saved config, or None when `expected_version` (-1: no check) is not current."""
        args: list[Any] = [
            user_id,
            backend_type,
            values.provider,
            values.model,
            values.temperature,
            values.mode,
            values.options,
            values.base_url,
        ]
        if expected_version == -1:
            row = await self.pool.fetchrow(_UPSERT, *args)
        elif expected_version == 0:
            row = await self.pool.fetchrow(_INSERT_NEW, *args)
        else:
            row = await self.pool.fetchrow(_UPDATE_IF_VERSION, *args, expected_version)
        return None if row is None else _config(row)

    async def current_version(self, user_id: str, backend_type: str) -> int:
        version = await self.pool.fetchval(
            "SELECT version FROM settings.backend_configs WHERE user_id = $1 AND backend_type = $2",
            user_id,
            backend_type,
        )
        return int(version or 0)

    async def delete_config(self, user_id: str, backend_type: str) -> None:
        await self.pool.execute(
            "DELETE FROM settings.backend_configs WHERE user_id = $1 AND backend_type = $2",
            user_id,
            backend_type,
        )

    async def set_key(
        self,
        user_id: str,
        backend_type: str,
        provider: str,
        encrypted: EncryptedKey,
        hint: str,
        fingerprint: str,
    ) -> None:
        await self.pool.execute(
            """
            INSERT INTO settings.api_keys
                (user_id, backend_type, provider, key_id, nonce, ciphertext, hint, fingerprint)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (user_id, backend_type) DO UPDATE SET
                provider = EXCLUDED.provider, key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
                ciphertext = EXCLUDED.ciphertext, hint = EXCLUDED.hint,
                fingerprint = EXCLUDED.fingerprint, created_at = now()
            """,
            user_id,
            backend_type,
            provider,
            encrypted.key_id,
            encrypted.nonce,
            encrypted.ciphertext,
            hint,
            fingerprint,
        )

    async def set_fingerprint(
        self, user_id: str, backend_type: str, nonce: bytes, fingerprint: str
    ) -> None:
        """Store a fingerprint computed for a row that had none, unless the key was replaced
        meanwhile (a new key or a rotation has a new nonce and its own fingerprint)."""
        await self.pool.execute(
            "UPDATE settings.api_keys SET fingerprint = $4"
            " WHERE user_id = $1 AND backend_type = $2 AND nonce = $3 AND fingerprint = ''",
            user_id,
            backend_type,
            nonce,
            fingerprint,
        )

    async def delete_key(self, user_id: str, backend_type: str) -> None:
        await self.pool.execute(
            "DELETE FROM settings.api_keys WHERE user_id = $1 AND backend_type = $2",
            user_id,
            backend_type,
        )
