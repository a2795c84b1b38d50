"""Member credits a hold before the provider is called, exact settlement, no overspend."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import openai
import pytest
from harness import USER_OPENAI_KEY, Platform, running_platform
from waiting import eventually

MESSAGES = [{"role": "user", "content": "count for me"}]


async def ledger(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def charges_applied(database_url: str, user: str, count: int) -> bool:
    rows = await ledger(
        database_url,
        "SELECT count(*) AS n FROM billing.ledger WHERE user_id = $1 AND kind = 'charge'",
        user,
    )
    return rows[0]["n"] >= count


async def balance(platform: Platform, user: str) -> dict:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.get("/api/billing/balance", headers=platform.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def hold_for_one_request(platform: Platform, database_url: str) -> int:
    """The worst-case hold of one request with MESSAGES and max_tokens=100, as billing priced it."""
    await platform.grant("probe", 1_000_000)
    raw = await platform.client("probe").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
    )
    assert int(raw.headers["x-credits-remaining"]) < 1_000_000
    rows = await ledger(
        database_url, "SELECT amount_micros FROM billing.holds WHERE user_id = 'probe'"
    )
    return rows[0]["amount_micros"]


@pytest.fixture
async def slow_platform(database_url: str, redis_url: str, redis_prefix: str):
    # Each answer takes ~1 s, so every request of a burst takes its hold before any settles.
    # Per-request holds (TEXT_SVC_CREDIT_LEASE=false): the test counts worst cases held one by
    # one against the balance, and reads the hold rows. Leases keep the same guarantee (no
    # overspend under a burst) in tests/test_credit_leases.py.
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        text={"credit_lease": False},
        stand_in_knobs={"token_delay_s": 0.05},
    ) as p:
        yield p


async def test_concurrent_requests_never_overspend(
    slow_platform: Platform, database_url: str
) -> None:
    platform = slow_platform
    hold = await hold_for_one_request(platform, database_url)
    platform.openai.reset()
    # Each answer of the burst takes ~4 s: every request takes its hold (or is refused) long
    # before the first one settles and returns its unused credits, even on a loaded machine.
    platform.openai.set_behaviour(token_delay_s=0.2)
    await platform.grant("alice", 10 * hold)
    client = platform.client("alice", timeout=60)

    async def one() -> str:
        try:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
            )
            return "ok"
        except openai.APIStatusError as err:
            assert err.status_code == 402, err
            assert err.body["code"] == "insufficient_credits"
            return "402"

    outcomes = await asyncio.gather(*(one() for _ in range(50)))
    assert outcomes.count("ok") == 10  # the balance covers exactly ten worst cases
    assert outcomes.count("ok") + outcomes.count("402") == 50
    assert platform.openai.stats["requests"] == outcomes.count("ok")

    await eventually(
        lambda: charges_applied(database_url, "alice", outcomes.count("ok")), what="charges applied"
    )
    rows = await ledger(
        database_url,
        "SELECT coalesce(sum(amount_micros), 0) AS total FROM billing.ledger"
        " WHERE user_id = 'alice'",
    )
    account = await ledger(
        database_url, "SELECT available_micros FROM billing.accounts WHERE user_id = 'alice'"
    )
    after = await balance(platform, "alice")
    assert after["held_micros"] == 0
    assert after["balance_micros"] == account[0]["available_micros"] == rows[0]["total"] >= 0


async def test_insufficient_credits_stops_the_call_before_the_provider(platform: Platform) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await platform.client("nobody").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_credits"
    assert platform.openai.stats["requests"] == 0


async def test_a_completed_request_is_charged_exactly_once(
    platform: Platform, database_url: str
) -> None:
    await platform.grant("bob", 1_000_000)
    reply = await platform.client("bob").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
    )
    await eventually(lambda: charges_applied(database_url, "bob", 1), what="the charge")
    [charge] = await ledger(
        database_url, "SELECT * FROM billing.ledger WHERE user_id = 'bob' AND kind = 'charge'"
    )
    assert charge["input_tokens"] == reply.usage.prompt_tokens
    assert charge["output_tokens"] == reply.usage.completion_tokens
    # gpt-4o-mini: 0.15 credits per million input tokens, 0.60 per million output; rounded up.
    expected = -(-reply.usage.prompt_tokens * 150_000 // 1_000_000) - (
        -reply.usage.completion_tokens * 600_000 // 1_000_000
    )
    assert charge["cost_micros"] == expected
    after = await balance(platform, "bob")
    assert after == {**after, "balance_micros": 1_000_000 - expected, "held_micros": 0}


async def test_a_client_that_drops_mid_stream_pays_for_what_was_generated(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    # A hold per request (TEXT_SVC_CREDIT_LEASE=false): the charge is compared with its hold.
    # With a credit lease the same drop is charged for what was generated in
    # tests/test_credit_leases.py.
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        text={"credit_lease": False},
        stand_in_knobs={"token_delay_s": 0.05},
    ) as platform:
        await platform.grant("carol", 1_000_000)
        async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as http:
            async with http.stream(
                "POST",
                "/api/text-proxy/v1/chat/completions",
                headers=platform.auth("carol"),
                json={
                    "model": "gpt-4o-mini",
                    "messages": MESSAGES,
                    "stream": True,
                    "max_tokens": 1000,
                },
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
        await eventually(
            lambda: charges_applied(database_url, "carol", 1), what="the partial charge"
        )
        [charge] = await ledger(
            database_url, "SELECT * FROM billing.ledger WHERE user_id = 'carol' AND kind = 'charge'"
        )
        assert charge["outcome"] == "client_disconnect"
        assert 0 < charge["output_tokens"] < 20
        assert 0 < charge["cost_micros"] < charge["hold_micros"]
        after = await balance(platform, "carol")
        assert after["held_micros"] == 0
        assert after["balance_micros"] == 1_000_000 - charge["cost_micros"]


async def test_byok_moves_no_credits_and_is_still_listed(
    platform: Platform, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        await http.put(
            "/api/settings/llm/text",
            json={"provider": "openai", "model": "gpt-4o", "mode": "byok"},
            headers=platform.auth("dave"),
        )
        await http.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth("dave"),
        )
    await platform.grant("dave", 1_000_000)
    await platform.client("dave").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert platform.openai.last_request.key == USER_OPENAI_KEY

    async def usage_listed() -> dict | None:
        async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
            response = await http.get("/api/usage?backend_type=text", headers=platform.auth("dave"))
        assert response.status_code == 200, response.text
        totals = response.json()["totals"]
        return totals[0] if totals else None

    total = await eventually(usage_listed, what="BYOK usage listed")
    assert total["mode"] == "byok"
    assert total["requests"] == 1
    assert total["output_tokens"] == 20
    assert (await balance(platform, "dave"))["balance_micros"] == 1_000_000
