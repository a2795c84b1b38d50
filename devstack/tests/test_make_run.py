"""`make run` loses no usage event: its Redis persists and a crashed service is started again.

Each test runs the real `python -m devstack` in a session of its own, on a folder and gateway
port of its own, on this test's Postgres database (DATABASE_URL) and devstack's own embedded
Redis; requests go through the gateway with the official openai SDK.
"""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg
import httpx
import openai
import psutil
import pytest
import redis.asyncio as aioredis
from openai.types.chat import ChatCompletionMessageParam
from waiting import eventually

from devstack.__main__ import STARTING_BALANCE_MICROS
from devstack.embedded import stack_redis
from devstack.testing import DevStack

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "count for me"}]


async def _fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


@pytest.mark.timeout(90)
async def test_a_billing_svc_killed_mid_burst_is_restarted_and_every_answer_charged_once(
    make_run: DevStack,
) -> None:
    # text-svc closes a credit lease one second after its last request, so the balance below
    # is read with every lease returned.
    make_run.start(TEXT_SVC_LEASE_IDLE_S="1")
    await make_run.wait_ready()
    user = "alice"
    client = openai.AsyncOpenAI(
        base_url=f"{make_run.gateway_url}/api/text-proxy/v1",
        api_key=make_run.token(user),
        max_retries=0,  # one request, one answer or one error: the count below is exact
        timeout=30.0,
    )
    # Answers take a second, so requests hold credits and are still being answered (their usage
    # events not yet published) when billing-svc dies.
    openai_port = _demo_port(make_run, "openai")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{openai_port}/_stand_in/behaviour", json={"first_byte_delay_s": 1.0}
        )
        assert response.status_code == 200, response.text

    billing_pid = make_run.service_pid("billing_svc")
    assert billing_pid is not None
    requests, kill_after = 30, 10
    answered = 0
    failures: list[str] = []
    set_aside_when_killed: list[int] = []
    slots = asyncio.Semaphore(6)

    async def one_request() -> None:
        nonlocal answered
        async with slots:
            try:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=16
                )
            except openai.APIError as error:
                failures.append(f"{type(error).__name__}: {error}")
                return
            answered += 1
            if answered == kill_after:
                # Kill while credits are set aside for requests in flight: a hold each, or the
                # user's credit lease (text-svc's default) that they are debited from.
                async def set_aside() -> int:
                    rows = await _fetch(
                        make_run.database_url,
                        "SELECT (SELECT count(*) FROM billing.holds WHERE user_id = $1"
                        "        AND status = 'open')"
                        "     + (SELECT count(*) FROM billing.leases WHERE user_id = $1"
                        "        AND status = 'open') AS n",
                        user,
                    )
                    return int(rows[0]["n"])

                set_aside_when_killed.append(
                    await eventually(set_aside, within_s=10.0, what="credits set aside")
                )
                os.kill(billing_pid, signal.SIGKILL)

    await asyncio.gather(*(one_request() for _ in range(requests)))
    await client.close()
    assert set_aside_when_killed and set_aside_when_killed[0] > 0, "nothing set aside at the kill"
    assert answered > kill_after, failures

    async def charged_for_every_answer() -> bool:
        restarted = make_run.service_pid("billing_svc")
        if restarted is None or restarted == billing_pid:
            return False
        rows = await _fetch(
            make_run.database_url,
            "SELECT count(*) AS n FROM billing.ledger WHERE user_id = $1 AND kind = 'charge'",
            user,
        )
        return bool(rows[0]["n"] >= answered)

    await eventually(
        charged_for_every_answer,
        within_s=30.0,
        what="billing-svc restarted and a charge for every answered request",
    )
    assert make_run.process is not None and make_run.process.poll() is None, make_run.log()
    charges = await _fetch(
        make_run.database_url,
        "SELECT amount_micros, cost_micros, shortfall_micros FROM billing.ledger"
        " WHERE user_id = $1 AND kind = 'charge'",
        user,
    )
    assert len(charges) == answered  # one charge per answered request: none lost, none twice
    assert all(c["cost_micros"] > 0 and c["shortfall_micros"] == 0 for c in charges)
    answers: list[httpx.Response] = []

    async def balance_answered() -> bool:
        # The gateway's channel may still be in its reconnect backoff to the restarted billing-svc
        # (a 503 that says to try again): ask until it answers, as a user would.
        async with httpx.AsyncClient(base_url=make_run.gateway_url) as http:
            answers.append(
                await http.get(
                    "/api/billing/balance",
                    headers={"authorization": f"Bearer {make_run.token(user)}"},
                )
            )
        return answers[-1].status_code != 503

    await eventually(balance_answered, within_s=15.0, what="the balance from billing-svc")
    response = answers[-1]
    assert response.status_code == 200, response.text
    balance = response.json()
    spent = -sum(c["amount_micros"] for c in charges)
    # A request that failed while billing-svc was down may have left a hold that expires later.
    assert balance["balance_micros"] + balance["held_micros"] == STARTING_BALANCE_MICROS - spent
    assert "billing-svc killed by SIGKILL; restarting it" in make_run.log()

    # Every credit lease comes back: text-svc closes them once idle (retrying while billing-svc
    # was down) and billing-svc returns what they did not spend, exactly.
    async def leases_returned() -> bool:
        rows = await _fetch(
            make_run.database_url,
            "SELECT count(*) FILTER (WHERE status IN ('open', 'closing')) AS open,"
            "       count(*) AS opened FROM billing.leases WHERE user_id = $1",
            user,
        )
        return bool(rows[0]["opened"] > 0 and rows[0]["open"] == 0)

    await eventually(leases_returned, within_s=20.0, what="the credit leases returned")
    [account] = await _fetch(
        make_run.database_url,
        "SELECT available_micros, (SELECT coalesce(sum(amount_micros), 0) FROM billing.holds"
        "  WHERE user_id = $1 AND status = 'open') AS held"
        " FROM billing.accounts WHERE user_id = $1",
        user,
    )
    assert account["available_micros"] + account["held"] == STARTING_BALANCE_MICROS - spent


def _demo_port(stack: DevStack, provider: str) -> int:
    assert stack.process is not None
    for child in psutil.Process(stack.process.pid).children():
        args = child.cmdline()
        if args[1:3] == ["-m", "provider_stand_ins"] and provider in args:
            return int(args[args.index("--port") + 1])
    raise AssertionError(f"no demo {provider} stand-in")


@pytest.mark.timeout(90)
async def test_make_run_stopped_leaves_its_redis_with_the_streams_groups_and_pending_entries(
    make_run: DevStack,
) -> None:
    make_run.start()
    await make_run.wait_ready()
    redis_url = make_run.stack_env("BILLING_SVC_REDIS_URL")
    stream, group = "devstack-test:events", "devstack-test"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        ids = [await redis.xadd(stream, {"n": str(n)}) for n in range(3)]
        await redis.xgroup_create(stream, group, id="0")
        # Read and never acknowledged: pending, as a consumer that died leaves them.
        await redis.xreadgroup(group, "consumer-that-died", {stream: ">"}, count=2)
        assert b"billing" in [g["name"] for g in await redis.xinfo_groups("usage-events")]
    finally:
        await redis.aclose()
    assert make_run.stop() == 0

    # make run's Redis started again on the same folder, as the next `make run` starts it.
    server = stack_redis(make_run.folder)
    try:
        assert server.url == redis_url
        redis = aioredis.Redis.from_url(redis_url)
        try:
            entries = await redis.xrange(stream) or []
            assert [entry_id for entry_id, _ in entries] == ids
            pending = await redis.xpending(stream, group)
            assert pending["pending"] == 2
            assert pending["consumers"] == [{"name": b"consumer-that-died", "pending": 2}]
            assert b"billing" in [g["name"] for g in await redis.xinfo_groups("usage-events")]
        finally:
            await redis.aclose()
    finally:
        server.stop()
