"""Versioned SQL migrations of a service's own Postgres schema, each applied once, under a lock.

Files are `NNNN_name.sql` in the service's migrations folder, applied in order, each in its own
transaction, recorded in `<schema>.schema_migrations`. Several replicas starting at once wait on the
same advisory lock, so each migration runs exactly once.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import asyncpg

__all__ = ["apply_migrations"]

log = logging.getLogger(__name__)


def _lock_id(schema: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"migrations:{schema}".encode()).digest()[:8], "big", signed=True
    )


def _read_migrations(folder: Path) -> list[tuple[str, str]]:
    return [(p.name, p.read_text()) for p in sorted(folder.glob("*.sql"))]


async def apply_migrations(conn: asyncpg.Connection, schema: str, folder: Path) -> list[str]:
    """Apply every migration in `folder` not yet recorded; returns the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _lock_id(schema))
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["name"] for r in await conn.fetch(f'SELECT name FROM "{schema}".schema_migrations')
        }
        for name, sql in _read_migrations(folder):
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                await conn.execute(sql)
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (name) VALUES ($1)', name
                )
            log.info("applied migration %s.%s", schema, name)
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _lock_id(schema))
    return applied_now
