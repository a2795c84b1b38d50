"""Credit leases across the platform: text-svc debits a user's member requests from a lease
billing-svc set aside once (OpenLease), instead of a Reserve each, and every guarantee of holds
stays: nothing is called before its worst case is set aside, each request is charged exactly
once, the balance never goes below zero, and what a lease did not spend comes back, also when
text-svc dies holding it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import openai
import pytest
from harness import PLATFORM_ANTHROPIC_KEY, PLATFORM_OPENAI_KEY, Platform, running_platform
from waiting import eventually

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.errors import INSUFFICIENT_CREDITS, from_rpc_error

MESSAGES = [{"role": "user", "content": "count for me"}]
LEASE_REQUESTS = 16  # billing-svc's default BILLING_SVC_LEASE_REQUESTS
# A lease no request took from for half a second is closed, so tests see it returned soon.
FAST_CLOSE = {"lease_idle_s": 0.5}
FAST_CLOSE_ENV = {name: str(value) for name, value in FAST_CLOSE.items()}


async def query(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def leases(database_url: str, user: str) -> list[asyncpg.Record]:
    return await query(
        database_url, "SELECT * FROM billing.leases WHERE user_id = $1 ORDER BY created_at", user
    )


async def charges(database_url: str, user: str) -> list[asyncpg.Record]:
    return await query(
        database_url,
        "SELECT * FROM billing.ledger WHERE user_id = $1 AND kind = 'charge' ORDER BY occurred_at",
        user,
    )


async def settled(database_url: str, user: str) -> bool:
    """No lease or hold of the user is open: everything set aside came back or was charged."""
    rows = await query(
        database_url,
        "SELECT (SELECT count(*) FROM billing.leases WHERE user_id = $1"
        "        AND status IN ('open', 'closing'))"
        "     + (SELECT count(*) FROM billing.holds WHERE user_id = $1 AND status = 'open') AS n",
        user,
    )
    return rows[0]["n"] == 0


async def assert_invariant(database_url: str, user: str) -> int:
    """available + open holds + the unspent part of open leases = the ledger's sum, and the
    balance is not negative; returns what is available."""
    [row] = await query(
        database_url,
        "SELECT a.available_micros,"
        " (SELECT coalesce(sum(amount_micros), 0) FROM billing.holds"
        "   WHERE user_id = a.user_id AND status = 'open') AS held,"
        " (SELECT coalesce(sum(amount_micros - spent_micros), 0) FROM billing.leases"
        "   WHERE user_id = a.user_id AND status IN ('open', 'closing')) AS leased,"
        " (SELECT coalesce(sum(amount_micros), 0) FROM billing.ledger"
        "   WHERE user_id = a.user_id) AS ledger"
        " FROM billing.accounts a WHERE a.user_id = $1",
        user,
    )
    assert row["available_micros"] + row["held"] + row["leased"] == row["ledger"], dict(row)
    assert row["available_micros"] >= 0, dict(row)
    return int(row["available_micros"])


async def balance(platform: Platform, user: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.get("/api/billing/balance", headers=platform.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def put_text_config(platform: Platform, user: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put("/api/settings/llm/text", json=body, headers=platform.auth(user))
    assert response.status_code == 200, response.text


@contextlib.asynccontextmanager
async def text_svc_process(
    platform: Platform, log_path: Path, **settings: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """`python -m text_svc` on the platform's services (its log in `log_path`), with
    `settings` as TEXT_SVC_<NAME>; yields the process and its port, stopped with SIGTERM."""
    text = platform.text_settings
    assert text.service_token is not None and text.redis_url is not None
    env = {
        **os.environ,
        "TEXT_SVC_ENVIRONMENT": "test",
        "TEXT_SVC_LISTEN": "127.0.0.1:0",
        "TEXT_SVC_SERVICE_TOKEN_SECRET": platform.service_secret,
        "TEXT_SVC_SERVICE_TOKEN": text.service_token.get_secret_value(),
        "TEXT_SVC_SETTINGS_TARGET": text.settings_target,
        "TEXT_SVC_BILLING_TARGET": text.billing_target,
        "TEXT_SVC_REDIS_URL": text.redis_url.get_secret_value(),
        "TEXT_SVC_USAGE_STREAM": text.usage_stream,
        "TEXT_SVC_SETTINGS_CHANGED_CHANNEL": text.settings_changed_channel,
        "TEXT_SVC_OPENAI_BASE_URL": text.openai_base_url,
        "TEXT_SVC_OPENAI_API_KEY": PLATFORM_OPENAI_KEY,
        "TEXT_SVC_ANTHROPIC_BASE_URL": text.anthropic_base_url,
        "TEXT_SVC_ANTHROPIC_API_KEY": PLATFORM_ANTHROPIC_KEY,
        "TEXT_SVC_ALLOWED_BASE_URL_HOSTS": "127.0.0.1",
        **{f"TEXT_SVC_{name.upper()}": value for name, value in settings.items()},
    }
    with log_path.open("wb") as log:  # a file, not a pipe nobody reads: it never fills up
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "text_svc", env=env, stderr=log
        )
    try:

        async def ready_port() -> int | None:
            output = await asyncio.to_thread(log_path.read_text, errors="replace")
            assert process.returncode is None, f"text-svc exited: {output}"
            match = re.search(r"text-svc ready on port (\d+)", output)
            return int(match.group(1)) if match else None

        yield process, await eventually(ready_port, within_s=30, what="text-svc ready")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # a graceful stop closes its leases
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


def gpt_cost(usage: Any, input_price: int, output_price: int) -> int:
    """ceil(n * price / 1M) per unit, as billing.prices prices per million tokens."""
    return -(-usage.prompt_tokens * input_price // 1_000_000) - (
        -usage.completion_tokens * output_price // 1_000_000
    )


async def worst_case_of(platform: Platform, database_url: str, user: str, **ask: Any) -> int:
    """One request's worst case as billing-svc priced it: a rich user's first lease is sized
    for LEASE_REQUESTS of them."""
    await platform.grant(user, 1_000_000)
    await platform.client(user).chat.completions.create(messages=MESSAGES, **ask)
    [lease] = await leases(database_url, user)
    assert lease["amount_micros"] % LEASE_REQUESTS == 0
    return int(lease["amount_micros"]) // LEASE_REQUESTS


@pytest.fixture
async def platform(database_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Platform]:
    async with running_platform(database_url, redis_url, redis_prefix, text=FAST_CLOSE) as p:
        yield p


async def test_twenty_member_requests_take_one_lease_and_each_is_charged_once(
    platform: Platform, database_url: str
) -> None:
    await platform.grant("alice", 1_000_000)
    client = platform.client("alice")
    completion_ids = []
    remaining = []
    for _ in range(20):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=100,
            extra_headers={"x-request-id": "uuid#3"},  # one client id for all: never keys money
        )
        completion_ids.append(raw.parse().id)
        remaining.append(int(raw.headers["x-credits-remaining"]))
    assert platform.openai.stats["requests"] == 20

    [lease] = await leases(database_url, "alice")
    assert lease["holder"] and lease["amount_micros"] > 0
    assert await query(database_url, "SELECT 1 FROM billing.holds WHERE user_id = 'alice'") == []
    # The first request's worst case was debited from the lease before the provider call: what
    # the user has is the balance less that worst case.
    worst = lease["amount_micros"] // LEASE_REQUESTS
    assert remaining[0] == 1_000_000 - worst

    await eventually(lambda: settled(database_url, "alice"), what="the lease returned")
    rows = await charges(database_url, "alice")
    assert len(rows) == 20
    assert sorted(completion_ids) == sorted(f"chatcmpl-{r['event_id']}" for r in rows)
    assert all("uuid#3" not in r["event_id"] for r in rows)
    assert all(r["lease_id"] == lease["lease_id"] and r["hold_id"] is None for r in rows)
    assert all(r["cost_micros"] > 0 and r["shortfall_micros"] == 0 for r in rows)
    assert all(r["hold_micros"] == r["cost_micros"] for r in rows)  # all paid from the lease
    spent = sum(r["cost_micros"] for r in rows)
    [lease] = await leases(database_url, "alice")
    assert (lease["status"], lease["spent_micros"], lease["events"]) == ("returned", spent, 20)
    assert await assert_invariant(database_url, "alice") == 1_000_000 - spent
    after = await balance(platform, "alice")
    assert after == {**after, "balance_micros": 1_000_000 - spent, "held_micros": 0}


@pytest.fixture
async def repricing_platform(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Platform]:
    # billing-svc reads prices afresh for every batch; a lease stays in use for 2 s after its
    # last request, longer than a usage event takes to be charged.
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        text={"lease_idle_s": 2.0},
        billing={"price_cache_s": 0},
    ) as p:
        yield p


async def test_a_request_on_a_lease_whose_price_was_removed_is_charged_its_debited_worst_case(
    repricing_platform: Platform, database_url: str
) -> None:
    platform = repricing_platform
    await platform.grant("erin", 1_000_000)
    client = platform.client("erin")
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
    [priced] = await eventually(lambda: charges(database_url, "erin"), what="the first charge")
    [lease] = await leases(database_url, "erin")
    worst = lease["amount_micros"] // LEASE_REQUESTS
    assert 0 < priced["cost_micros"] < worst

    # The operator withdraws the price while the lease is open: text-svc still debits the next
    # request from the lease (priced when it opened), and billing-svc, unable to price the
    # usage, charges the worst case the usage event says was debited for it.
    await query(
        database_url,
        "DELETE FROM billing.prices WHERE provider = 'openai' AND model = 'gpt-4o-mini'",
    )
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
    )
    assert reply.usage is not None and 0 < gpt_cost(reply.usage, 150_000, 600_000) < worst

    async def second_charge() -> list[asyncpg.Record]:
        rows = await charges(database_url, "erin")
        return rows if len(rows) == 2 else []

    [_, unpriced] = await eventually(second_charge, what="the second charge")
    assert unpriced["event_id"] == reply.id.removeprefix("chatcmpl-")
    assert (unpriced["lease_id"], unpriced["cost_micros"], unpriced["shortfall_micros"]) == (
        lease["lease_id"],
        worst,
        0,
    )
    assert unpriced["hold_micros"] == worst  # from the lease, like any charge against it
    assert await query(database_url, "SELECT 1 FROM billing.holds WHERE user_id = 'erin'") == []

    await eventually(lambda: settled(database_url, "erin"), what="the lease returned")
    spent = priced["cost_micros"] + worst
    [lease] = await leases(database_url, "erin")
    assert (lease["status"], lease["spent_micros"], lease["events"]) == ("returned", spent, 2)
    assert await assert_invariant(database_url, "erin") == 1_000_000 - spent


@pytest.fixture
async def slow_platform(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Platform]:
    # Each answer takes ~1 s: a burst's requests are all in flight together.
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        text=FAST_CLOSE,
        stand_in_knobs={"token_delay_s": 0.05},
    ) as p:
        yield p


async def test_two_text_svc_processes_under_a_burst_never_overspend(
    slow_platform: Platform, database_url: str, tmp_path: Path
) -> None:
    platform = slow_platform
    worst = await worst_case_of(
        platform, database_url, "probe", model="gpt-4o-mini", max_tokens=100
    )
    platform.openai.reset()
    # Ten worst cases: far fewer than the burst's requests, so some must be refused.
    await platform.grant("alice", 10 * worst)
    metadata = outgoing_metadata(
        mint_service_token(platform.service_secret, "gateway"), user_id="alice", is_member=True
    )
    request = text_pb2.GenerateRequest(
        model="gpt-4o-mini",
        messages=[text_pb2.ChatMessage(role="user", content=MESSAGES[0]["content"])],
        max_tokens=100,
    )
    answered: list[str] = []
    refused = 0

    async def one(stub: text_pb2_grpc.TextServiceStub) -> None:
        nonlocal refused
        try:
            reply = await stub.Generate(request, metadata=metadata, timeout=60)
        except grpc.aio.AioRpcError as err:
            remote = from_rpc_error(err)
            assert remote.reason == INSUFFICIENT_CREDITS, remote
            refused += 1
            return
        answered.append(reply.id)

    # A second text-svc process beside the platform's, each with its own leases of alice's
    # credits.
    async with text_svc_process(platform, tmp_path / "text-svc.log", **FAST_CLOSE_ENV) as (
        _,
        second_port,
    ):
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{platform.text_port}") as first_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{second_port}") as second_channel,
        ):
            stubs = [
                text_pb2_grpc.TextServiceStub(first_channel),
                text_pb2_grpc.TextServiceStub(second_channel),
            ]
            await asyncio.gather(*(one(stubs[n % 2]) for n in range(40)))
        assert len(answered) + refused == 40
        assert 0 < len(answered) <= 10 and refused >= 30
        # Nothing called without its worst case set aside first.
        assert platform.openai.stats["requests"] == len(answered)
        await assert_invariant(database_url, "alice")

    await eventually(lambda: settled(database_url, "alice"), what="every lease returned")
    rows = await charges(database_url, "alice")
    assert sorted(r["event_id"] for r in rows) == sorted(answered)  # each charged exactly once
    assert all(r["cost_micros"] > 0 and r["shortfall_micros"] == 0 for r in rows)
    spent = sum(r["cost_micros"] for r in rows)
    assert await assert_invariant(database_url, "alice") == 10 * worst - spent


async def test_a_balance_too_low_for_a_lease_reserves_per_request_and_402s_when_empty(
    platform: Platform, database_url: str
) -> None:
    worst = await worst_case_of(
        platform, database_url, "probe", model="gpt-4o-mini", max_tokens=100
    )
    # A quarter of it is less than one worst case: billing-svc spares no lease.
    await platform.grant("bob", 2 * worst)
    reply = await platform.client("bob").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
    )
    assert await leases(database_url, "bob") == []
    [hold] = await query(database_url, "SELECT * FROM billing.holds WHERE user_id = 'bob'")
    assert hold["amount_micros"] == worst
    await eventually(lambda: settled(database_url, "bob"), what="bob's hold settled")
    [charge] = await charges(database_url, "bob")
    assert f"chatcmpl-{charge['event_id']}" == reply.id
    assert (charge["hold_id"], charge["lease_id"]) == (hold["hold_id"], None)
    assert await assert_invariant(database_url, "bob") == 2 * worst - charge["cost_micros"]

    requests_before = platform.openai.stats["requests"]
    with pytest.raises(openai.APIStatusError) as caught:
        await platform.client("nobody").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_credits"
    assert platform.openai.stats["requests"] == requests_before
    assert await leases(database_url, "nobody") == []


async def test_a_client_that_drops_mid_stream_pays_from_the_lease_for_what_was_generated(
    slow_platform: Platform, database_url: str
) -> None:
    platform = slow_platform
    await platform.grant("carol", 1_000_000)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as http:
        async with http.stream(
            "POST",
            "/api/text-proxy/v1/chat/completions",
            headers=platform.auth("carol"),
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_tokens": 1000},
        ) as response:
            assert response.status_code == 200
            seen = 0
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    seen += 1
                if seen >= 5:
                    break
    await platform.openai.wait_for(
        lambda: platform.openai.stats["streams_cancelled"] == 1, timeout=10
    )
    await eventually(lambda: settled(database_url, "carol"), what="the lease returned")
    [lease] = await leases(database_url, "carol")
    worst = lease["amount_micros"] // LEASE_REQUESTS
    [charge] = await charges(database_url, "carol")
    assert charge["outcome"] == "client_disconnect"
    assert charge["lease_id"] == lease["lease_id"]
    assert 0 < charge["output_tokens"] < 20
    assert 0 < charge["cost_micros"] < worst
    assert (lease["status"], lease["spent_micros"]) == ("returned", charge["cost_micros"])
    after = await balance(platform, "carol")
    assert after == {**after, "balance_micros": 1_000_000 - charge["cost_micros"], "held_micros": 0}


@pytest.fixture
async def outage_platform(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Platform]:
    # No retries: the primary's one failure is the outage; prices read at every OpenLease.
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        text={"max_retries": 0, **FAST_CLOSE},
        billing={"price_cache_s": 0},
    ) as p:
        yield p


async def test_a_lease_covers_the_costliest_fallback_and_charges_the_route_taken(
    outage_platform: Platform, database_url: str
) -> None:
    platform = outage_platform
    gpt_4o_worst = await worst_case_of(
        platform, database_url, "probe", model="gpt-4o", max_tokens=100
    )
    platform.openai.reset()
    await put_text_config(
        platform,
        "carol",
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "mode": "member",
            "options": {"fallback": "gpt-4o"},  # ~16x the primary's price
        },
    )
    await platform.grant("carol", 1_000_000)
    platform.openai.set_behaviour(error_status=503, fail_times=1, retry_after_s=0)
    raw = await platform.client("carol").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
    )
    reply = raw.parse()
    assert reply.model == "gpt-4o"
    # Sized, and debited before any provider call, for the dearest route, not the primary.
    [lease] = await leases(database_url, "carol")
    assert lease["amount_micros"] == LEASE_REQUESTS * gpt_4o_worst
    assert int(raw.headers["x-credits-remaining"]) == 1_000_000 - gpt_4o_worst

    await eventually(lambda: settled(database_url, "carol"), what="the lease returned")
    [charge] = await charges(database_url, "carol")
    expected = gpt_cost(reply.usage, 2_500_000, 10_000_000)  # gpt-4o's prices
    assert (charge["provider"], charge["model"], charge["lease_id"]) == (
        "openai",
        "gpt-4o",
        lease["lease_id"],
    )
    assert (charge["cost_micros"], charge["shortfall_micros"]) == (expected, 0)
    after = await balance(platform, "carol")
    assert after == {**after, "balance_micros": 1_000_000 - expected, "held_micros": 0}


async def test_an_unpriced_fallback_is_refused_before_a_lease_or_a_provider_call(
    outage_platform: Platform, database_url: str
) -> None:
    platform = outage_platform
    await put_text_config(
        platform,
        "frank",
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "mode": "member",
            "options": {"fallback": "gpt-4.1"},
        },
    )
    await query(
        database_url, "DELETE FROM billing.prices WHERE provider = 'openai' AND model = 'gpt-4.1'"
    )
    await platform.grant("frank", 1_000_000)
    platform.openai.set_behaviour(error_status=503, retry_after_s=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await platform.client("frank").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
        )
    assert "no price for openai/gpt-4.1" in caught.value.message
    assert "fallback" in caught.value.message
    assert platform.openai.requests == []
    assert await leases(database_url, "frank") == []
    after = await balance(platform, "frank")
    assert after == {**after, "balance_micros": 1_000_000, "held_micros": 0}


@pytest.fixture
async def short_lease_platform(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Platform]:
    # Leases used for 3 s and returned by the sweeper 2 s after that unless closed; answers take
    # half a second, so requests are in flight on a lease when its holder dies.
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        billing={"lease_use_s": 3, "hold_ttl_s": 2, "sweep_interval_s": 0.2},
        stand_in_knobs={"first_byte_delay_s": 0.5},
    ) as p:
        yield p


async def test_a_text_svc_killed_holding_a_lease_loses_no_charge_and_the_rest_comes_back(
    short_lease_platform: Platform, database_url: str, tmp_path: Path
) -> None:
    platform = short_lease_platform
    async with text_svc_process(platform, tmp_path / "text-svc.log") as (process, port):
        await platform.grant("dave", 1_000_000)
        metadata = outgoing_metadata(
            mint_service_token(platform.service_secret, "gateway"), user_id="dave", is_member=True
        )
        request = text_pb2.GenerateRequest(
            model="gpt-4o-mini",
            messages=[text_pb2.ChatMessage(role="user", content=MESSAGES[0]["content"])],
            max_tokens=100,
        )
        answered: list[str] = []
        cut = 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = text_pb2_grpc.TextServiceStub(channel)

            async def one() -> None:
                nonlocal cut
                try:
                    reply = await stub.Generate(request, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                    cut += 1
                    return
                answered.append(reply.id)

            await asyncio.gather(*(one() for _ in range(6)))

            async def first_wave_charged() -> bool:
                return len(await charges(database_url, "dave")) == 6

            # Its usage events are out of the process before it dies (a crash loses what a
            # process had not yet sent, lease or no lease).
            await eventually(first_wave_charged, what="the first wave charged")
            # A second wave, killed while its requests are in flight on an open lease.
            calls = [asyncio.ensure_future(one()) for _ in range(6)]

            async def requests_in_flight() -> bool:
                return len(platform.openai.requests) >= 12

            await eventually(requests_in_flight, what="the second wave at the provider")
            process.kill()
            await process.wait()
            await asyncio.gather(*calls)
        assert len(answered) == 6 and cut == 6
        open_at_kill = [r for r in await leases(database_url, "dave") if r["status"] == "open"]
        assert open_at_kill, "no lease was open when text-svc died"

    # The sweeper returns what the dead holder's leases did not spend.
    await eventually(lambda: settled(database_url, "dave"), within_s=20, what="leases swept")
    rows = await charges(database_url, "dave")
    assert sorted(r["event_id"] for r in rows) == sorted(answered)  # none lost, none twice
    assert all(r["shortfall_micros"] == 0 and r["lease_id"] for r in rows)
    spent = sum(r["cost_micros"] for r in rows)
    statuses = {r["status"] for r in await leases(database_url, "dave")}
    assert "expired" in statuses and statuses <= {"expired", "returned"}
    assert await assert_invariant(database_url, "dave") == 1_000_000 - spent
    after = await balance(platform, "dave")
    assert after == {**after, "balance_micros": 1_000_000 - spent, "held_micros": 0}
