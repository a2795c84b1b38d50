"""Benchmark: usage events applied per second by one consumer.

python -m bench.billing_consumer [--events N] [--batch-size N] [--database-url URL]
    [--redis-url URL]

Creates a scratch database on the Postgres server (the URL needs CREATE DATABASE rights) and
scratch stream names, pre-publishes the events (80 % member mode settling a hold, 20 % BYOK,
over 1,000 users), then times one UsageConsumer draining them. `run_bench()` is the entry point
for the root benchmark suite (`make bench`). It lives here, not in billing_svc, so that the
production package ships no bench code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
import uvloop
from pydantic import SecretStr

from billing_svc import db
from billing_svc.consumer import UsageConsumer
from billing_svc.environment import Settings
from billing_svc.prices import PriceBook
from svc_common.usage_events import UsageEvent, now_ms

USERS = 1_000
HOLD_MICROS = 750  # gpt-4o-mini worst case for 1,000 input + 1,000 output tokens


@dataclass(frozen=True, slots=True)
class BenchResult:
    events: int
    batch_size: int
    seconds: float
    events_per_s: float


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def run_bench(
    admin_database_url: str, redis_url: str, *, events: int = 10_000, batch_size: int = 500
) -> BenchResult:
    name = f"billing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = _with_database(admin_database_url, name)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_url),
        usage_stream=f"{prefix}usage-events",
        consumer_group=f"{prefix}billing",
        dead_letter_stream=f"{prefix}usage-events-dead",
        consumer_name=f"{prefix}bench",
        batch_size=batch_size,
        block_ms=50,
    )
    redis = aioredis.Redis.from_url(redis_url)
    pool = None
    try:
        await db.migrate(database_url)
        pool = await db.create_pool(database_url, 4)
        batch = await _seed(pool, events)
        for i in range(0, len(batch), 1_000):
            async with redis.pipeline(transaction=False) as pipe:
                for event in batch[i : i + 1_000]:
                    pipe.xadd(settings.usage_stream, dict[Any, Any](event.to_fields()))
                await pipe.execute()
        consumer = UsageConsumer(settings, pool, PriceBook(settings.price_cache_s), redis)
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run())
        while consumer.applied + consumer.duplicates < events:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        consumer.stop()
        await task
        applied = await pool.fetchval(
            "SELECT count(*) FROM billing.ledger WHERE hold_id IS NOT NULL"
        )
        assert applied == sum(1 for e in batch if e.hold_id), "not every hold was settled"
    finally:
        await redis.delete(settings.usage_stream, settings.dead_letter_stream)
        await redis.aclose()
        if pool is not None:
            await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return BenchResult(events, batch_size, round(seconds, 3), round(events / seconds))


async def _seed(pool: asyncpg.Pool, events: int) -> list[UsageEvent]:
    """Accounts, and open holds for the member-mode events; returns the events to publish."""
    users = [f"bench-user-{i}" for i in range(USERS)]
    batch: list[UsageEvent] = []
    for i in range(events):
        member = i % 5 != 0
        request_id = f"bench-{i}-{uuid.uuid4().hex[:8]}"
        batch.append(
            UsageEvent(
                event_id=request_id,
                user_id=users[i % USERS],
                backend_type="text",
                provider="openai",
                model="gpt-4o-mini",
                mode="member" if member else "byok",
                outcome="success",
                input_tokens=400,
                output_tokens=300,
                hold_id=request_id if member else "",
                started_at_ms=now_ms() - 1_000,
                ended_at_ms=now_ms(),
            )
        )
    holds = [e for e in batch if e.hold_id]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO billing.accounts (user_id, available_micros)"
            " SELECT u, 1000000000 FROM unnest($1::text[]) AS u",
            users,
        )
        await conn.execute(
            "INSERT INTO billing.holds"
            " (hold_id, user_id, amount_micros, backend_type, provider, model, expires_at)"
            " SELECT h, u, $3, 'text', 'openai', 'gpt-4o-mini', now() + interval '1 hour'"
            " FROM unnest($1::text[], $2::text[]) AS t(h, u)",
            [e.hold_id for e in holds],
            [e.user_id for e in holds],
            HOLD_MICROS,
        )
    return batch


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m bench.billing_consumer", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--database-url", default=defaults.database_url.get_secret_value())
    parser.add_argument("--redis-url", default=defaults.redis_url.get_secret_value())
    args = parser.parse_args(argv)
    result = uvloop.run(
        run_bench(args.database_url, args.redis_url, events=args.events, batch_size=args.batch_size)
    )
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
