"""Carry the old single-backend preferences (public.user_preferences) into the text slot.

The old app kept one config per user with the API key in plaintext. For every such row without a
text config, the row becomes the text config (byok if it had a key, else member), the key is
encrypted into settings.api_keys, and the plaintext column is cleared, all in one transaction per
batch. Runs under an advisory lock; inserts are ON CONFLICT DO NOTHING, so it is safe to run twice
and from several replicas at once. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import logging

import asyncpg

from settings_svc.keystore import KeyRing, associated_data, key_hint
from settings_svc.presets import PresetCatalog

log = logging.getLogger(__name__)

LEGACY_TABLE = "public.user_preferences"
_COLUMNS = {"user_id", "llm_provider", "llm_model", "llm_temperature", "llm_api_key"}
_LOCK_ID = int.from_bytes(
    hashlib.sha256(b"settings:legacy-carry-over").digest()[:8], "big", signed=True
)

# Rows still to carry: no text config yet, or a plaintext key still present.
_PENDING = """
SELECT up.user_id, up.llm_provider, up.llm_model, up.llm_temperature, up.llm_api_key
FROM public.user_preferences up
WHERE up.user_id > $1
  AND (up.llm_api_key IS NOT NULL
       OR NOT EXISTS (SELECT 1 FROM settings.backend_configs c
                      WHERE c.user_id = up.user_id AND c.backend_type = 'text'))
ORDER BY up.user_id
LIMIT $2
FOR UPDATE OF up
"""

_INSERT_CONFIG = """
INSERT INTO settings.backend_configs
    (user_id, backend_type, provider, model, temperature, mode, options, base_url, version)
VALUES ($1, 'text', $2, $3, $4, $5, '{}', '', nextval('settings.config_version_seq'))
ON CONFLICT (user_id, backend_type) DO NOTHING
"""

_INSERT_KEY = """
INSERT INTO settings.api_keys
    (user_id, backend_type, provider, key_id, nonce, ciphertext, hint, fingerprint)
VALUES ($1, 'text', $2, $3, $4, $5, $6, $7)
ON CONFLICT (user_id, backend_type) DO NOTHING
"""


async def _legacy_table_present(conn: asyncpg.Connection) -> bool:
    columns = {
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'user_preferences'"
        )
    }
    if not columns:
        return False
    if not _COLUMNS <= columns:
        log.warning(
            "%s lacks columns %s: legacy preferences not carried over",
            LEGACY_TABLE,
            sorted(_COLUMNS - columns),
        )
        return False
    return True


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


async def carry_over_legacy(
    pool: asyncpg.Pool, keyring: KeyRing, presets: PresetCatalog, batch_size: int = 200
) -> int:
    """Carry every pending legacy row over; returns how many rows were processed now."""
    default = presets.default("text")
    if default is None:
        raise RuntimeError("no text presets: apply the migrations before the legacy carry-over")
    processed = 0
    async with pool.acquire() as conn:
        if not await _legacy_table_present(conn):
            return 0
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            after = ""
            while True:
                async with conn.transaction():
                    rows = await conn.fetch(_PENDING, after, batch_size)
                    for row in rows:
                        await _carry_row(conn, row, keyring, presets)
                if not rows:
                    break
                processed += len(rows)
                after = rows[-1]["user_id"]
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    if processed:
        log.info("carried %d legacy preference rows into text configs", processed)
    return processed


async def _carry_row(
    conn: asyncpg.Connection, row: asyncpg.Record, keyring: KeyRing, presets: PresetCatalog
) -> None:
    user_id: str = row["user_id"]
    legacy_provider = (row["llm_provider"] or "").strip().lower()
    preset = presets.get("text", legacy_provider)
    model = (row["llm_model"] or "").strip()
    if preset is None:
        preset = presets.default("text")
        assert preset is not None
        log.warning(
            "legacy provider %r is not a text provider: user's text config uses %s/%s",
            legacy_provider[:64],
            preset.provider,
            preset.default_model,
            extra={"user_id": user_id},
        )
        model = preset.default_model
    # A model the preset no longer lists is kept: the user chose it, and the provider may serve it.
    model = model or preset.default_model
    temperature = row["llm_temperature"]
    if temperature is not None and preset.has_temperature:
        assert preset.temperature_min is not None and preset.temperature_max is not None
        temperature = _clamp(float(temperature), preset.temperature_min, preset.temperature_max)
    elif not preset.has_temperature:
        temperature = None
    api_key = (row["llm_api_key"] or "").strip()
    mode = "byok" if api_key or not preset.member_allowed else "member"

    await conn.execute(_INSERT_CONFIG, user_id, preset.provider, model, temperature, mode)
    if api_key:
        encrypted = keyring.encrypt(api_key, associated_data(user_id, "text", preset.provider))
        await conn.execute(
            _INSERT_KEY,
            user_id,
            preset.provider,
            encrypted.key_id,
            encrypted.nonce,
            encrypted.ciphertext,
            key_hint(api_key),
            keyring.fingerprint(encrypted.key_id, user_id, api_key),
        )
    if row["llm_api_key"] is not None:
        await conn.execute(
            "UPDATE public.user_preferences SET llm_api_key = NULL WHERE user_id = $1", user_id
        )
