"""billing-svc as real processes: one is SIGKILLed mid-burst and restarted beside a second replica;
every usage event is still applied exactly once and nothing is left pending."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import asyncpg
import pytest
import redis.asyncio as aioredis
from billing_test_support import SECRET, usage_event, wait_for

from billing_svc import accounts

USAGE_MICROS = 15 + 120  # gpt-4o-mini, 100 input + 200 output tokens
EVENTS = 2_000
USERS = [f"crash-user-{i}" for i in range(5)]
GRANT = 10_000_000


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[IO[bytes]]:
    with (tmp_path / "billing-svc.log").open("wb") as log:
        yield log


class Replicas:
    def __init__(self, env: dict[str, str], logs: IO[bytes]) -> None:
        self.env = env
        self.logs = logs
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, redis: aioredis.Redis) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "billing_svc", env=self.env, stdout=self.logs, stderr=self.logs
        )
        self.processes.append(process)
        name = f"{socket.gethostname()}-{process.pid}"

        async def joined_the_group() -> bool:
            assert process.returncode is None, "billing-svc exited at start"
            try:
                consumers = await redis.xinfo_consumers(
                    self.env["BILLING_SVC_USAGE_STREAM"], self.env["BILLING_SVC_CONSUMER_GROUP"]
                )
            except aioredis.ResponseError:  # no stream or group yet
                return False
            return any(c["name"].decode() == name for c in consumers)

        await wait_for(joined_the_group, 30, f"replica {name} to start consuming")
        return process

    async def stop_all(self) -> list[int | None]:
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                codes.append(await asyncio.wait_for(process.wait(), 20))
            except TimeoutError:
                process.kill()
                codes.append(await process.wait())
        return codes


@pytest.mark.timeout(180)
async def test_a_replica_killed_mid_burst_loses_and_doubles_nothing(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    logs: IO[bytes],
) -> None:
    stream, group = f"{redis_prefix}usage-events", f"{redis_prefix}billing"
    env = {
        **os.environ,
        "BILLING_SVC_ENVIRONMENT": "test",
        "BILLING_SVC_LOG_LEVEL": "INFO",
        "BILLING_SVC_SERVICE_TOKEN_SECRET": SECRET,
        "BILLING_SVC_DATABASE_URL": database_url,
        "BILLING_SVC_REDIS_URL": redis_url,
        "BILLING_SVC_USAGE_STREAM": stream,
        "BILLING_SVC_CONSUMER_GROUP": group,
        "BILLING_SVC_DEAD_LETTER_STREAM": f"{redis_prefix}usage-events-dead",
        "BILLING_SVC_CLAIM_IDLE_MS": "1000",
        "BILLING_SVC_CLAIM_INTERVAL_S": "0.25",
        "BILLING_SVC_BATCH_SIZE": "50",
        "BILLING_SVC_BLOCK_MS": "200",
        "BILLING_SVC_GRACE_SECONDS": "5",
    }
    replicas = Replicas(env, logs)
    db = await asyncpg.connect(database_url)
    try:
        # Two replicas start together: the migrations run once, under their advisory lock.
        first, _ = await asyncio.gather(replicas.start(redis_client), replicas.start(redis_client))
        for user_id in USERS:
            await accounts.grant(
                db,
                user_id=user_id,
                amount_micros=GRANT,
                grant_id=f"start-{user_id}",
                reason="test",
                starting_balance_micros=0,
            )
        rng = random.Random(7)
        events = [
            usage_event(rng.choice(USERS), mode="byok" if i % 10 == 0 else "member")
            for i in range(EVENTS)
        ]

        async def publish_burst() -> None:
            for i in range(0, EVENTS, 50):
                async with redis_client.pipeline(transaction=False) as pipe:
                    for event in events[i : i + 50]:
                        pipe.xadd(stream, event.to_fields())
                    await pipe.execute()
                await asyncio.sleep(0.02)

        async def applied() -> int:
            count: int = await db.fetchval(
                "SELECT count(*) FROM billing.ledger WHERE kind IN ('charge', 'usage')"
            )
            return count

        async def mid_burst() -> bool:
            return await applied() >= 400

        burst = asyncio.create_task(publish_burst())
        await wait_for(mid_burst, 60, "400 events applied")
        first.kill()  # SIGKILL: no shutdown, its batch in flight and its pending entries orphaned
        await first.wait()
        killed_at = await applied()
        await replicas.start(redis_client)
        await burst

        async def all_applied_and_acked() -> bool:
            summary = await redis_client.xpending(stream, group)
            return await applied() == EVENTS and summary["pending"] == 0

        await wait_for(all_applied_and_acked, 90, f"all {EVENTS} events applied and acked")
        codes = await replicas.stop_all()
    finally:
        for process in replicas.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await db.close()

    assert killed_at < EVENTS, "the replica was killed after the burst, not during it"
    assert codes[0] == -signal.SIGKILL and codes[1:] == [0, 0]  # the others stopped gracefully
    charged = {u: sum(1 for e in events if e.user_id == u and e.mode == "member") for u in USERS}
    db = await asyncpg.connect(database_url)
    try:
        rows = await db.fetch("SELECT user_id, available_micros FROM billing.accounts")
        ledger_total = await db.fetchval("SELECT count(*) FROM billing.ledger")
    finally:
        await db.close()
    assert {r["user_id"]: r["available_micros"] for r in rows} == {
        u: GRANT - charged[u] * USAGE_MICROS for u in USERS
    }
    assert ledger_total == EVENTS + len(USERS)  # the events and the grants, nothing twice
    assert await redis_client.xlen(f"{redis_prefix}usage-events-dead") == 0
