"""Start-up policy: where migrations run (BILLING_SVC_MIGRATE_ON_START)."""

from __future__ import annotations

import asyncpg
import pytest
from billing_test_support import billing_settings

from billing_svc import db
from billing_svc.server import create_server

pytestmark = pytest.mark.timeout(60)


async def _has_billing_schema(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = 'billing'"))
    finally:
        await conn.close()


async def test_a_replica_with_migrate_on_start_off_does_not_touch_the_schema(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    # deploy/k8s runs `python -m billing_svc migrate` as a Job and starts replicas with
    # BILLING_SVC_MIGRATE_ON_START=false: a replica never changes the schema itself.
    settings = billing_settings(
        database_url, redis_url, redis_prefix, migrate_on_start=False, run_consumer=False
    )
    server = create_server(settings)
    await server.start()
    try:
        assert not await _has_billing_schema(database_url)
    finally:
        await server.stop(0)

    await db.migrate(database_url)
    assert await _has_billing_schema(database_url)


async def test_migrations_run_at_start_by_default(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    server = create_server(billing_settings(database_url, redis_url, redis_prefix))
    assert not await _has_billing_schema(database_url)  # building the server does no I/O
    await server.start()
    try:
        assert await _has_billing_schema(database_url)
    finally:
        await server.stop(0)
