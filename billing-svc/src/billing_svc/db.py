"""The Postgres side: the connection pool, migrations of schema `billing`, and which errors pass."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg

from svc_common.migrations import apply_migrations

log = logging.getLogger(__name__)

SCHEMA = "billing"
MIGRATIONS = Path(__file__).parent / "migrations"

# Errors after which the same work may succeed later: the server went away, restarts, is
# overloaded, or aborted the transaction to break a deadlock. Anything else is about the data.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection killed mid-statement can leave asyncpg's protocol state confused; the pool
    # discards that connection on release, and the retry runs on a fresh one.
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)


def is_transient(exc: BaseException) -> bool:
    # asyncpg's client-side DataError (a value that cannot be encoded) is an InterfaceError too.
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        return False
    return isinstance(exc, TRANSIENT_DB_ERRORS)


async def migrate(database_url: str) -> list[str]:
    conn = await connect_with_retry(database_url)
    try:
        return await apply_migrations(conn, SCHEMA, MIGRATIONS)
    finally:
        await conn.close()


async def connect_with_retry(database_url: str, attempts: int = 20) -> asyncpg.Connection:
    """One connection, waiting for a Postgres that is still starting (up to ~30 s)."""
    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            return await asyncpg.connect(database_url, timeout=10)
        except TRANSIENT_DB_ERRORS as exc:
            if attempt == attempts:
                raise
            log.warning("postgres not reachable (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool.

    asyncpg's default reset is a round trip (RESET ALL, UNLISTEN *, CLOSE ALL, advisory unlocks)
    paid by every caller of `async with pool.acquire()`; billing-svc sets no session state on
    pooled connections (no SET, LISTEN, cursors or advisory locks: migrations use their own
    connection). asyncpg still rolls back an open transaction before calling this.
    """


async def create_pool(database_url: str, max_size: int, min_size: int = 1) -> asyncpg.Pool:
    pool = await unopened_pool(database_url, max_size, min_size)
    assert pool is not None
    return pool


def unopened_pool(database_url: str, max_size: int, min_size: int = 1) -> asyncpg.Pool:
    """The pool, not yet connected: `await pool` opens it (billing-svc's server, at start)."""
    return asyncpg.create_pool(
        database_url,
        min_size=min(min_size, max_size),
        max_size=max_size,
        timeout=10,
        command_timeout=30,
        # A broken connection (Postgres restarted) is replaced on the next acquire.
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
    )
