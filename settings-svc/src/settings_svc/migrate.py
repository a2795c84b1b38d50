"""Schema migrations (SQL files), then the legacy carry-over (Python: it needs the key ring)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from settings_svc.keystore import KeyRing
from settings_svc.legacy import carry_over_legacy
from settings_svc.presets import PresetCatalog
from settings_svc.store import SCHEMA
from svc_common.migrations import apply_migrations

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def migrate(
    pool: asyncpg.Pool, keyring: KeyRing, presets: PresetCatalog, batch_size: int = 200
) -> list[str]:
    """Update the schema, load the presets, carry legacy rows over; returns SQL files applied."""
    async with pool.acquire() as conn:
        applied = await apply_migrations(conn, SCHEMA, MIGRATIONS_DIR)
    await presets.reload(pool)
    await carry_over_legacy(pool, keyring, presets, batch_size)
    return applied
