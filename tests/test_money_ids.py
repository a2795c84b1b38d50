"""Money is keyed only on ids the platform mints (issue 7, items 1 and 3).

A client's x-request-id is a correlation id: reusing one never makes a request free, and a
member request that falls back during an outage is held and charged for the route it took.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import openai
import pytest
from harness import USER_OPENAI_KEY, Platform, running_platform
from waiting import eventually

MESSAGES = [{"role": "user", "content": "count for me"}]


async def query(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def charges(database_url: str, user: str) -> list[asyncpg.Record]:
    return await query(
        database_url,
        "SELECT * FROM billing.ledger WHERE user_id = $1 AND kind = 'charge' ORDER BY occurred_at",
        user,
    )


async def wait_for_charges(database_url: str, user: str, count: int) -> list[asyncpg.Record]:
    async def enough() -> list[asyncpg.Record]:
        rows = await charges(database_url, user)
        assert len(rows) <= count, rows
        return rows if len(rows) == count else []

    return await eventually(enough, what=f"{count} charges of {user}")


async def balance(platform: Platform, user: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.get("/api/billing/balance", headers=platform.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def put_text_config(platform: Platform, user: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put("/api/settings/llm/text", json=body, headers=platform.auth(user))
    assert response.status_code == 200, response.text


@pytest.fixture
async def holding_platform(database_url: str, redis_url: str, redis_prefix: str):
    # A hold per request (TEXT_SVC_CREDIT_LEASE=false): the test reads each request's hold.
    # With a credit lease the same requests are charged six times in
    # tests/test_credit_leases.py.
    async with running_platform(
        database_url, redis_url, redis_prefix, text={"credit_lease": False}
    ) as p:
        yield p


async def test_one_request_id_six_times_is_charged_six_times(
    holding_platform: Platform, database_url: str
) -> None:
    platform = holding_platform
    await platform.grant("alice", 1_000_000)
    client = platform.client("alice")
    completion_ids = []
    for _ in range(6):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=100,
            extra_headers={"x-request-id": "uuid#3"},  # as a proxy in front sends them
        )
        assert raw.headers["x-request-id"] == "uuid#3"  # echoed, for the client's logs
        completion_ids.append(raw.parse().id)
    assert platform.openai.stats["requests"] == 6

    rows = await wait_for_charges(database_url, "alice", 6)
    # Six usage events, six holds, six charges: each keyed on an id the platform minted.
    assert len({r["event_id"] for r in rows}) == 6
    assert len({r["hold_id"] for r in rows}) == 6
    assert all("uuid#3" not in r["event_id"] for r in rows)
    assert sorted(completion_ids) == sorted(f"chatcmpl-{r['event_id']}" for r in rows)
    spent = sum(r["cost_micros"] for r in rows)
    assert all(r["cost_micros"] > 0 and r["shortfall_micros"] == 0 for r in rows)
    after = await balance(platform, "alice")
    assert after["held_micros"] == 0
    assert after["balance_micros"] == 1_000_000 - spent


async def test_an_id_a_byok_request_used_does_not_make_a_member_request_free(
    platform: Platform, database_url: str
) -> None:
    # dave asks with his own key first, then as a member with the same id; erin (a member) sends
    # the id dave used: she is neither refused nor told that it exists, and she pays.
    await put_text_config(
        platform, "dave", {"provider": "openai", "model": "gpt-4o", "mode": "byok"}
    )
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth("dave"),
        )
        assert response.status_code == 200, response.text
    await platform.grant("dave", 1_000_000)
    await platform.grant("erin", 1_000_000)
    same_id = {"x-request-id": "shared-id-1"}

    await platform.client("dave").chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_headers=same_id
    )
    assert platform.openai.last_request.key == USER_OPENAI_KEY

    async def byok_usage() -> list[asyncpg.Record]:
        return await query(
            database_url, "SELECT * FROM billing.ledger WHERE user_id = 'dave' AND kind = 'usage'"
        )

    await eventually(byok_usage, what="dave's BYOK usage")

    await put_text_config(
        platform, "dave", {"provider": "openai", "model": "gpt-4o-mini", "mode": "member"}
    )
    await platform.client("dave").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=50, extra_headers=same_id
    )
    await platform.client("erin").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=50, extra_headers=same_id
    )
    assert platform.openai.last_request.key != USER_OPENAI_KEY  # the platform's key

    for user in ("dave", "erin"):
        [charge] = await wait_for_charges(database_url, user, 1)
        assert charge["mode"] == "member" and charge["cost_micros"] > 0
        after = await balance(platform, user)
        assert after == {
            **after,
            "balance_micros": 1_000_000 - charge["cost_micros"],
            "held_micros": 0,
        }


@pytest.fixture
async def outage_platform(database_url: str, redis_url: str, redis_prefix: str):
    # No retries: the primary's one failure is the outage; prices read on every Reserve, so an
    # operator's price change applies at once. A hold per request (TEXT_SVC_CREDIT_LEASE=false):
    # the tests read the hold rows; tests/test_credit_leases.py holds a lease to the same.
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        text={"max_retries": 0, "credit_lease": False},
        billing={"price_cache_s": 0},
    ) as p:
        yield p


async def member_hold(database_url: str, user: str) -> int:
    [row] = await query(
        database_url, "SELECT amount_micros FROM billing.holds WHERE user_id = $1", user
    )
    return int(row["amount_micros"])


async def test_a_costlier_fallback_is_held_for_and_charged_exactly(
    outage_platform: Platform, database_url: str
) -> None:
    platform = outage_platform
    # What a hold for gpt-4o as the primary is, for the same request.
    await platform.grant("probe", 1_000_000)
    await platform.client("probe").chat.completions.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=100
    )
    gpt_4o_hold = await member_hold(database_url, "probe")
    platform.openai.reset()

    await put_text_config(
        platform,
        "carol",
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "mode": "member",
            "options": {"fallback": "gpt-4o"},  # offered, priced, ~16x the primary's price
        },
    )
    await platform.grant("carol", 1_000_000)
    platform.openai.set_behaviour(error_status=503, fail_times=1, retry_after_s=0)
    reply = await platform.client("carol").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
    )

    assert reply.model == "gpt-4o"
    assert [(r.model, r.outcome) for r in platform.openai.requests] == [
        ("gpt-4o-mini", "failed"),
        ("gpt-4o", "completed"),
    ]
    # Held for the dearest route before any provider was called, not for the primary.
    assert await member_hold(database_url, "carol") == gpt_4o_hold
    [charge] = await wait_for_charges(database_url, "carol", 1)
    # gpt-4o: 2.50 credits per million input tokens, 10.00 per million output; rounded up.
    expected = -(-reply.usage.prompt_tokens * 2_500_000 // 1_000_000) - (
        -reply.usage.completion_tokens * 10_000_000 // 1_000_000
    )
    assert (charge["provider"], charge["model"]) == ("openai", "gpt-4o")
    assert charge["hold_micros"] == gpt_4o_hold
    assert (charge["cost_micros"], charge["shortfall_micros"]) == (expected, 0)
    after = await balance(platform, "carol")
    assert after == {**after, "balance_micros": 1_000_000 - expected, "held_micros": 0}


async def test_an_unpriced_fallback_is_never_called_on_the_platform_key(
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
    # The operator withdraws gpt-4.1's price after frank saved his config.
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
    # Refused before any provider was called: no hold, nothing spent.
    assert platform.openai.requests == []
    after = await balance(platform, "frank")
    assert after == {**after, "balance_micros": 1_000_000, "held_micros": 0}


async def test_an_unoffered_operator_fallback_is_never_called_on_the_platform_key(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        # Not among the models the openai preset offers: members never get it.
        text={"max_retries": 0, "fallback": "gpt-4.5-preview"},
    ) as platform:
        await platform.grant("grace", 1_000_000)
        platform.openai.set_behaviour(error_status=503, retry_after_s=0)
        with pytest.raises(openai.APIStatusError) as caught:
            await platform.client("grace").chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
            )
        assert caught.value.status_code == 503
        assert [r.model for r in platform.openai.requests] == ["gpt-4o-mini"]
