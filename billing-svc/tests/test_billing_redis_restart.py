"""billing-svc keeps consuming usage events across a Redis restart, each event applied once.

Each test runs a Redis of its own (devstack's EmbeddedRedis on a unix socket in a temporary
folder) so it can stop it and start it again on the same socket, with its data (append-only
file) or without (the stream and the consumer group are gone and must be recreated).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from billing_test_support import Billing, billing_settings, usage_event, wait_for

from billing_svc.server import create_server
from devstack.embedded import EmbeddedRedis

USAGE_MICROS = 15 + 120  # gpt-4o-mini, 100 input + 200 output tokens
GRANT = 10_000_000


class RestartableRedis:
    def __init__(self, folder: Path, *, persist: bool) -> None:
        self.folder = folder
        self.persist = persist
        self.server: EmbeddedRedis | None = EmbeddedRedis(folder, persist=persist)
        self.url = self.server.url

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop()
        self.server = None

    def start(self) -> None:
        assert self.server is None
        self.server = EmbeddedRedis(self.folder, persist=self.persist)
        assert self.server.url == self.url


@pytest.fixture
def redis_folder() -> Iterator[Path]:
    # Not tmp_path: a unix socket path must stay under ~100 characters.
    folder = Path(tempfile.mkdtemp(prefix="billing-redis-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=[True, False], ids=["persistent", "empty"])
def own_redis(request: pytest.FixtureRequest, redis_folder: Path) -> Iterator[RestartableRedis]:
    redis = RestartableRedis(redis_folder, persist=request.param)
    yield redis
    if redis.server is not None:
        redis.server.stop()


@pytest.fixture
async def billing_on_own_redis(
    database_url: str, own_redis: RestartableRedis
) -> AsyncIterator[Billing]:
    prefix = f"restart-{uuid.uuid4().hex[:8]}:"
    settings = billing_settings(database_url, own_redis.url, prefix)
    server = create_server(settings)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    publisher = aioredis.Redis.from_url(own_redis.url)
    try:
        yield Billing(server, channel, publisher)
    finally:
        await publisher.aclose()
        await channel.close()
        await server.stop(5)


async def publish_batch(billing: Billing, user_id: str, count: int) -> None:
    """`count` events in one MULTI, so a consumer reads them as one batch."""
    async with billing.redis.pipeline(transaction=True) as pipe:
        for _ in range(count):
            pipe.xadd(billing.settings.usage_stream, usage_event(user_id).to_fields())
        await pipe.execute()


async def wait_consumer_noticed_outage(caplog: pytest.LogCaptureFixture) -> None:
    async def noticed() -> bool:
        return any(
            r.name == "billing_svc.consumer" and r.getMessage().startswith("redis:")
            for r in caplog.records
        )

    await wait_for(noticed, 30, "the consumer to notice Redis is gone")


async def test_usage_events_are_applied_once_across_a_redis_restart(
    billing_on_own_redis: Billing,
    own_redis: RestartableRedis,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    billing = billing_on_own_redis
    caplog.set_level(logging.WARNING, logger="billing_svc.consumer")
    alice = f"restart-user-{uuid.uuid4().hex[:8]}"
    await billing.grant(alice, GRANT)

    await publish_batch(billing, alice, 50)
    await billing.wait_applied(alice, 50)

    # A batch in flight when Redis goes away: read (pending) and not yet committed, because the
    # test holds alice's account row. Once released, the consumer commits it and its XACK fails.
    locker = await asyncpg.connect(database_url)
    try:
        locked = locker.transaction()
        await locked.start()
        await locker.execute("SELECT 1 FROM billing.accounts WHERE user_id = $1 FOR UPDATE", alice)
        await publish_batch(billing, alice, 30)
        await wait_for(lambda: _pending_is(billing, 30), 20, "30 entries read and not acked")
        caplog.clear()
        own_redis.stop()
        await locked.rollback()
    finally:
        await locker.close()
    await wait_for(lambda: _ledger_has(billing, alice, 80), 20, "the in-flight batch committed")
    await wait_consumer_noticed_outage(caplog)
    own_redis.start()

    await publish_batch(billing, alice, 40)
    await wait_for(lambda: _all_applied(billing, alice, 120), 30, "120 usage events applied")

    assert await billing.ledger_count(alice) == 120
    assert (await billing.balance(alice)).balance_micros == GRANT - 120 * USAGE_MICROS
    await billing.assert_consistent(alice)
    consumer = billing.server.consumer
    assert consumer is not None
    assert (consumer.applied, consumer.dead_lettered) == (120, 0)
    # With its data back, Redis still had the in-flight batch pending: it was read again and
    # found applied (ledger by event id). Back empty, there was nothing left to read again.
    assert consumer.duplicates == (30 if own_redis.persist else 0)


async def _ledger_has(billing: Billing, user_id: str, count: int) -> bool:
    return await billing.ledger_count(user_id) == count


async def _all_applied(billing: Billing, user_id: str, count: int) -> bool:
    return await _ledger_has(billing, user_id, count) and await _pending_is(billing, 0)


async def _pending_is(billing: Billing, count: int) -> bool:
    try:
        return await billing.pending() == count
    except aioredis.ResponseError:
        return False
