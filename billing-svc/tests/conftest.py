"""billing-svc test fixtures: a real billing server on port 0 over a fresh database and streams.

Callers present minted service tokens ("text-svc" for user calls, "operator" for grants), as the
real callers do.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis

# Tests import their helpers from billing_test_support (a unique name beside this file).
sys.path.insert(0, str(Path(__file__).parent))

from billing_test_support import Billing, billing_settings

from billing_svc.server import create_server


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with @pytest.mark.parametrize) to change the settings."""
    return {}


@pytest.fixture
async def billing(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    settings_overrides: dict[str, Any],
) -> AsyncIterator[Billing]:
    settings = billing_settings(database_url, redis_url, redis_prefix, **settings_overrides)
    server = create_server(settings)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Billing(server, channel, redis_client)
    finally:
        await channel.close()
        await server.stop(5)
        await redis_client.delete(settings.usage_stream, settings.dead_letter_stream)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()
