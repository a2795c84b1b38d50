"""Fixtures for settings-svc tests: a real server on port 0 over a fresh database, and clients."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

# Tests import their helpers from settings_test_support (a unique name beside this file).
sys.path.insert(0, str(Path(__file__).parent))

from settings_test_support import (
    SERVICE_SECRET,
    Client,
    new_master_key,
    running,
)

from settings_svc.environment import Settings
from settings_svc.server import SettingsServer


@pytest.fixture
def master_key() -> str:
    return new_master_key("k1")


@pytest.fixture
def make_settings(
    database_url: str, redis_url: str, redis_prefix: str, master_key: str
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "redis_url": redis_url,
            "settings_changed_channel": f"{redis_prefix}settings-changed",
            "encryption_keys": master_key,
            "service_token_secret": SERVICE_SECRET,
            "allowed_base_url_hosts": ["ollama.internal", "127.0.0.2"],
            "db_pool_max_size": 4,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def server(make_settings: Callable[..., Settings]) -> AsyncIterator[SettingsServer]:
    async with running(make_settings()) as srv:
        yield srv


@pytest.fixture
async def client(server: SettingsServer) -> AsyncIterator[Client]:
    c = Client(server.port)
    yield c
    await c.close()
