"""Test infrastructure shared by every test folder: a real Postgres and Redis, a clean environment.

Postgres and Redis come from TEST_DATABASE_URL / TEST_REDIS_URL when set, else testcontainers where
a Docker engine answers, else embedded servers. Each test gets its own database and its own Redis
key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

# pytest's importlib mode would otherwise bind these names to the same-named project folders
# (gateway/, devstack/) rather than to the packages inside them.
import devstack
import gateway

del devstack, gateway

_ENV_PREFIXES = (
    "GATEWAY_",
    "TEXT_SVC_",
    "SETTINGS_SVC_",
    "BILLING_SVC_",
    "MULTIMODAL_SVC_",
    "IMAGE_SVC_",
    "OPENAI_",
    "ANTHROPIC_",
    "OTEL_",
    "OLLAMA_",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the developer's environment."""
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(key)


def _infra_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="platform-test-"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A Postgres server URL (admin rights: tests create a database each)."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    from devstack.embedded import EmbeddedPostgres, docker_engine_answers

    if docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    server = EmbeddedPostgres(_infra_dir() / "pg")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    from devstack.embedded import EmbeddedRedis, docker_engine_answers

    if docker_engine_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    server = EmbeddedRedis(_infra_dir() / "redis")
    yield server.url
    server.stop()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test alone, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(postgres_url, name)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def redis_prefix() -> str:
    """A prefix for this test's stream, group and channel names."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
