"""Fixtures for the cross-service tests: the whole platform, started fresh for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness import Platform, running_platform


@pytest.fixture
async def platform(database_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Platform]:
    async with running_platform(database_url, redis_url, redis_prefix) as p:
        yield p
