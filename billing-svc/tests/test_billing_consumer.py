"""The usage-event consumer against a real Redis stream and Postgres: exactly-once effect,
settlement of holds, dead letters, pending recovery and trimming."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from billing_test_support import Billing, usage_event, wait_for

from billing_svc.prices import PriceBook
from billing_svc.settlement import apply_usage_events
from grpc_stubs.common.v1 import common_pb2

WORST_CASE_MICROS = 150 + 600  # gpt-4o-mini, 1,000 input + 1,000 output tokens
USAGE_MICROS = 15 + 120  # 100 input + 200 output tokens

MANUAL = {"run_consumer": False}  # the test drives UsageConsumer objects itself


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_an_event_published_twice_is_charged_once(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    hold = await billing.reserve(alice, "req-1")
    event = usage_event(alice, event_id="req-1", hold_id="req-1")
    first, second = await billing.publish(event), await billing.publish(event)

    await billing.wait_applied(alice, 1)
    await wait_for(lambda: _acked(billing, second), what="both entries acked")

    assert first != second
    assert await billing.ledger_count(alice) == 1
    balance = await billing.balance(alice)
    assert (balance.balance_micros, balance.held_micros) == (1_000_000 - USAGE_MICROS, 0)
    row = await billing.ledger_row("req-1")
    assert (row["kind"], row["amount_micros"], row["hold_micros"]) == (
        "charge",
        -USAGE_MICROS,
        hold.amount_micros,
    )
    await billing.assert_consistent(alice)


@pytest.mark.parametrize("settings_overrides", [MANUAL])
async def test_an_entry_redelivered_after_its_commit_is_charged_once(billing: Billing) -> None:
    """A consumer committed the event and died before XACK: the entry is claimed and re-applied."""
    alice = user()
    await billing.grant(alice, 1_000_000)
    live = billing.consumer(consumer_name="live", claim_idle_ms=200)
    await live.ensure_group()
    event = usage_event(alice)
    entry_id = await billing.publish(event)
    # The consumer that dies: reads the entry, applies it, never acks.
    await billing.redis.xreadgroup(
        billing.settings.consumer_group, "dead", {billing.settings.usage_stream: ">"}
    )
    async with billing.pool.acquire() as conn:
        await apply_usage_events(conn, [event], await PriceBook(0).current(conn), 0)
    assert (await billing.balance(alice)).balance_micros == 1_000_000 - USAGE_MICROS

    task = asyncio.create_task(live.run())
    try:
        await wait_for(lambda: _acked(billing, entry_id), what="the entry claimed and acked")
    finally:
        live.stop()
        await task
    assert live.duplicates == 1 and live.applied == 0
    assert await billing.ledger_count(alice) == 1
    assert (await billing.balance(alice)).balance_micros == 1_000_000 - USAGE_MICROS


@pytest.mark.parametrize("settings_overrides", [MANUAL])
async def test_on_start_a_consumer_first_applies_its_own_pending_entries(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    restarted = billing.consumer(consumer_name="pod-1", claim_idle_ms=600_000)
    await restarted.ensure_group()
    for _ in range(3):
        await billing.publish(usage_event(alice))
    # The same consumer, before its restart, read them and died before applying them.
    await billing.redis.xreadgroup(
        billing.settings.consumer_group, "pod-1", {billing.settings.usage_stream: ">"}
    )
    assert await billing.pending() == 3

    task = asyncio.create_task(restarted.run())
    try:
        await billing.wait_applied(alice, 3)  # far sooner than claim_idle_ms
    finally:
        restarted.stop()
        await task
    assert (await billing.balance(alice)).balance_micros == 1_000_000 - 3 * USAGE_MICROS


async def test_a_malformed_event_is_dead_lettered_and_the_ones_behind_it_are_applied(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    bad_id = await billing.redis.xadd(
        billing.settings.usage_stream,
        {"event_id": "req-bad", "backend_type": "text", "mode": "member", "outcome": "success"},
    )
    negative = usage_event(alice).to_fields() | {"output_tokens": "-5"}
    await billing.redis.xadd(billing.settings.usage_stream, negative)
    for _ in range(3):
        await billing.publish(usage_event(alice))

    await billing.wait_applied(alice, 3)
    dead = await billing.redis.xrange(billing.settings.dead_letter_stream)
    assert len(dead) == 2
    fields = dead[0][1]
    assert fields[b"dead_letter_reason"] == b"invalid usage event: missing field 'user_id'"
    assert fields[b"dead_letter_entry_id"] == bad_id
    assert fields[b"event_id"] == b"req-bad"  # the original fields travel with it
    assert dead[1][1][b"dead_letter_reason"] == b"invalid usage event: output_tokens is negative"
    assert (await billing.balance(alice)).balance_micros == 1_000_000 - 3 * USAGE_MICROS


@pytest.mark.parametrize("settings_overrides", [{"claim_idle_ms": 100, "max_deliveries": 3}])
async def test_an_event_the_database_refuses_is_retried_then_dead_lettered(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    # Postgres refuses NUL in text: this event fails every time it is applied.
    poison = usage_event(alice, mode="byok", model="gpt\x00-4o")
    await billing.publish(poison)
    for _ in range(3):
        await billing.publish(usage_event(alice))

    await billing.wait_applied(alice, 3)
    dead = await billing.redis.xrange(billing.settings.dead_letter_stream)
    assert len(dead) == 1
    assert dead[0][1][b"event_id"] == poison.event_id.encode()
    assert dead[0][1][b"dead_letter_reason"] == b"not applied after 4 deliveries"
    assert (await billing.balance(alice)).balance_micros == 1_000_000 - 3 * USAGE_MICROS


async def test_a_client_disconnect_charges_what_was_generated_and_returns_the_rest(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    hold = await billing.reserve(alice, "req-1")
    assert hold.amount_micros == WORST_CASE_MICROS

    await billing.publish(
        usage_event(
            alice,
            event_id="req-1",
            hold_id="req-1",
            outcome="client_disconnect",
            input_tokens=1_000,
            output_tokens=300,
        )
    )
    await billing.wait_applied(alice, 1)

    cost = 150 + 180  # 1,000 input tokens, the 300 output tokens generated before the disconnect
    balance = await billing.balance(alice)
    assert (balance.balance_micros, balance.held_micros) == (1_000_000 - cost, 0)
    row = await billing.ledger_row("req-1")
    assert row["outcome"] == "client_disconnect"
    assert (row["amount_micros"], row["cost_micros"], row["shortfall_micros"]) == (-cost, cost, 0)
    status = await billing.pool.fetchval("SELECT status FROM billing.holds WHERE hold_id = 'req-1'")
    assert status == "settled"
    await billing.assert_consistent(alice)


async def test_usage_beyond_the_hold_is_charged_up_to_the_balance(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000)
    await billing.reserve(alice, "req-1")  # 750 held, 250 left
    await billing.publish(
        usage_event(
            alice, event_id="req-1", hold_id="req-1", input_tokens=1_000, output_tokens=2_000
        )
    )
    await billing.wait_applied(alice, 1)

    row = await billing.ledger_row("req-1")
    cost = 150 + 1_200
    assert (row["amount_micros"], row["cost_micros"], row["shortfall_micros"]) == (
        -1_000,
        cost,
        cost - 1_000,
    )
    balance = await billing.balance(alice)
    assert (balance.balance_micros, balance.held_micros) == (0, 0)
    await billing.assert_consistent(alice)


@pytest.mark.parametrize("settings_overrides", [{"starting_balance_micros": 10_000}])
async def test_usage_of_a_user_without_an_account_opens_it_with_the_starting_balance(
    billing: Billing,
) -> None:
    alice, bob = user(), user()
    await billing.grant(bob, 1_000)  # an account exists for one user of the batch, not the other
    for who in (alice, bob):
        await billing.publish(usage_event(who, input_tokens=100, output_tokens=200))
    await billing.wait_applied(alice, 1)
    await billing.wait_applied(bob, 1)

    assert (await billing.balance(alice)).balance_micros == 10_000 - USAGE_MICROS
    assert (await billing.balance(bob)).balance_micros == 10_000 + 1_000 - USAGE_MICROS
    await billing.assert_consistent(alice)
    await billing.assert_consistent(bob)


async def test_an_event_after_its_hold_was_released_is_charged_from_the_balance(
    billing: Billing,
) -> None:
    from grpc_stubs.billing.v1 import billing_pb2

    alice = user()
    await billing.grant(alice, 1_000_000)
    await billing.reserve(alice, "req-1")
    await billing.stub.Release(
        billing_pb2.ReleaseRequest(hold_id="req-1"), metadata=billing.as_user(alice), timeout=10
    )
    await billing.publish(usage_event(alice, event_id="req-1", hold_id="req-1"))
    await billing.wait_applied(alice, 1)

    assert (await billing.balance(alice)).balance_micros == 1_000_000 - USAGE_MICROS
    row = await billing.ledger_row("req-1")
    assert (row["amount_micros"], row["hold_micros"]) == (-USAGE_MICROS, 0)
    await billing.assert_consistent(alice)


async def test_byok_usage_moves_no_credits_and_is_listed(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    await billing.publish(
        usage_event(alice, mode="byok", provider="anthropic", model="claude-3-5-haiku-latest")
    )
    await billing.publish(
        usage_event(alice, mode="byok", provider="anthropic", model="claude-3-5-haiku-latest")
    )
    await billing.publish(usage_event(alice, mode="byok", provider="ollama", model="llama3:latest"))
    await billing.publish(usage_event(alice))  # one member-mode request beside them
    await billing.publish(
        usage_event(
            alice,
            backend_type="image",
            mode="byok",
            model="dall-e-3",
            input_tokens=0,
            output_tokens=0,
            images=2,
            image_size="1024x1024",
            image_quality="hd",
        )
    )
    await billing.wait_applied(alice, 5)

    assert (await billing.balance(alice)).balance_micros == 1_000_000 - USAGE_MICROS
    totals = await billing.list_usage(alice, backend_type=common_pb2.BACKEND_TYPE_TEXT)
    summary = [
        (t.provider, t.model, t.mode, t.requests, t.input_tokens, t.output_tokens, t.cost_micros)
        for t in totals
    ]
    assert summary == [
        ("anthropic", "claude-3-5-haiku-latest", common_pb2.MODE_BYOK, 2, 200, 400, 0),
        ("ollama", "llama3:latest", common_pb2.MODE_BYOK, 1, 100, 200, 0),
        ("openai", "gpt-4o-mini", common_pb2.MODE_MEMBER, 1, 100, 200, USAGE_MICROS),
    ]
    images = await billing.list_usage(alice, backend_type=common_pb2.BACKEND_TYPE_IMAGE)
    assert [(t.model, t.images, t.mode) for t in images] == [("dall-e-3", 2, common_pb2.MODE_BYOK)]
    assert len(await billing.list_usage(alice)) == 4
    assert await billing.list_usage(alice, to_unix=1) == []
    assert await billing.list_usage(user()) == []


@pytest.mark.parametrize("settings_overrides", [MANUAL])
async def test_the_stream_is_trimmed_only_below_what_the_group_still_needs(
    billing: Billing,
) -> None:
    consumer = billing.consumer()
    await consumer.ensure_group()
    stream, group = billing.settings.usage_stream, billing.settings.consumer_group
    ids = [await billing.publish(usage_event(user())) for _ in range(5)]
    await billing.redis.xreadgroup(group, "reader", {stream: ">"}, count=2)
    await billing.redis.xack(stream, group, ids[0])  # ids[1] stays pending

    assert await consumer.trim() == 1
    assert [e[0].decode() for e in await billing.redis.xrange(stream)] == ids[1:]

    await billing.redis.xack(stream, group, ids[1])
    assert await consumer.trim() == 1
    # Never delivered yet: kept.
    assert [e[0].decode() for e in await billing.redis.xrange(stream)] == ids[2:]


async def test_postgres_connections_dropping_mid_stream_lose_and_double_nothing(
    billing: Billing, database_url: str
) -> None:
    alice = user()
    await billing.grant(alice, 10_000_000)
    events = [usage_event(alice) for _ in range(300)]

    async def publish_all() -> None:
        for i in range(0, len(events), 20):
            async with billing.redis.pipeline(transaction=False) as pipe:
                for event in events[i : i + 20]:
                    pipe.xadd(billing.settings.usage_stream, event.to_fields())
                await pipe.execute()
            await asyncio.sleep(0.01)

    publisher = asyncio.create_task(publish_all())
    for _ in range(5):  # what a Postgres restart does to the pool's connections
        await asyncio.sleep(0.05)
        await billing.pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    await publisher
    await billing.wait_applied(alice, 300)

    assert await billing.ledger_count(alice) == 300
    assert (await billing.balance(alice)).balance_micros == 10_000_000 - 300 * USAGE_MICROS
    await billing.assert_consistent(alice)


async def _acked(billing: Billing, entry_id: str) -> bool:
    pending = await billing.redis.xpending_range(
        billing.settings.usage_stream, billing.settings.consumer_group, entry_id, entry_id, 1
    )
    groups = await billing.redis.xinfo_groups(billing.settings.usage_stream)
    delivered = any(_key(g["last-delivered-id"].decode()) >= _key(entry_id) for g in groups)
    return delivered and not pending


def _key(entry_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in entry_id.split("-"))


@pytest.mark.parametrize("settings_overrides", [{"batch_linger_s": 0.5}])
async def test_events_that_arrive_while_the_consumer_lingers_are_applied_together(
    billing: Billing,
) -> None:
    """batch_linger_s: after a small batch the consumer lets events gather, so under load one
    transaction applies many. The first event is applied as soon as it is read."""
    alice = user()
    await billing.grant(alice, 1_000_000)
    await billing.publish(usage_event(alice, event_id="linger-first"))
    await billing.wait_applied(alice, 1)
    # Published one by one while the consumer lingers: without the linger, the consumer blocked
    # in XREADGROUP would read (and commit) each on its own.
    for name in ("b", "c", "d"):
        await billing.publish(usage_event(alice, event_id=f"linger-{name}"))
    await billing.wait_applied(alice, 4)

    rows = await billing.pool.fetch(
        "SELECT event_id, created_at FROM billing.ledger WHERE user_id = $1 AND kind = 'charge'",
        alice,
    )
    committed_at = {r["event_id"]: r["created_at"] for r in rows}
    # now() is the transaction's start: one value means one transaction.
    assert len({committed_at[f"linger-{name}"] for name in ("b", "c", "d")}) == 1
    assert committed_at["linger-first"] != committed_at["linger-b"]
    await billing.assert_consistent(alice)
