"""LeaseBook (svc_common.leases) against a real billing-svc on port 0, on the test's own database
and usage stream: one OpenLease per user and routes at a time, worst cases debited locally, the
unspent part given back to the lease, and each lease closed with the number of events published
against it once no request is in flight on it; and the book's metrics move as each happens."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic_settings import SettingsConfigDict

from billing_svc.environment import Settings as BillingSettings
from billing_svc.server import BillingServer, create_server
from grpc_stubs.billing.v1 import billing_pb2
from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import Caller, mint_service_token, outgoing_metadata
from svc_common.environment import ModelServiceSettings
from svc_common.errors import FailedPrecondition
from svc_common.holds import HoldClient, Route
from svc_common.leases import Debit, LeaseBook
from svc_common.metering import Metering
from svc_common.metrics import REGISTRY
from svc_common.prices import Units
from svc_common.usage_events import UsageEvent, now_ms, publish

pytestmark = pytest.mark.timeout(60)

SECRET = "lease-test-service-secret"
MINI = Route("openai", "gpt-4o-mini")  # 0.15 credits per million input tokens, 0.60 output
# 1000 input and 1000 output tokens on gpt-4o-mini: 150 + 600 micro-credits.
WORST = common_pb2.Usage(input_tokens=1000, output_tokens=1000)
UNIT = 750
USED = Units(input_tokens=10, output_tokens=20)  # ceil(1.5) + ceil(12) = 14 micro-credits
COST = 14
LEASE_REQUESTS = 16  # billing-svc's default BILLING_SVC_LEASE_REQUESTS


async def eventually(
    probe: Callable[[], Awaitable[Any]], within_s: float = 15.0, what: str = ""
) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while not (value := await probe()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class World:
    """A running billing-svc, its database, and text-svc's client of it."""

    def __init__(self, server: BillingServer, db: asyncpg.Connection, redis: aioredis.Redis):
        self.server = server
        self.settings: BillingSettings = server.settings
        self.db = db
        self.redis = redis
        self.token = mint_service_token(SECRET, "text-svc")
        self.client = HoldClient(f"127.0.0.1:{server.port}", self.token, 5.0)
        self.books: list[LeaseBook] = []

    def book(self, idle_s: float = 30.0) -> LeaseBook:
        book = LeaseBook(
            self.client.billing,
            self.token,
            holder="test-host-1",
            backend_type="text",
            timeout_s=5.0,
            idle_s=idle_s,
        )
        self.books.append(book)
        return book

    async def grant(self, user: str, micros: int) -> None:
        await self.client.billing.Grant(
            billing_pb2.GrantRequest(
                user_id=user, amount_micros=micros, grant_id=uuid.uuid4().hex, reason="test"
            ),
            metadata=outgoing_metadata(mint_service_token(SECRET, "operator")),
            timeout=5,
        )

    async def finish(self, book: LeaseBook, who: Caller, debit: Debit) -> None:
        """What text-svc does when a request ends: the usage event naming the lease is queued
        (here: sent), and the book gets back what the worst case did not cost."""
        event = UsageEvent(
            event_id=uuid.uuid4().hex,
            user_id=who.user_id,
            backend_type="text",
            provider=MINI.provider,
            model=MINI.model,
            mode="member",
            outcome="success",
            input_tokens=USED.input_tokens,
            output_tokens=USED.output_tokens,
            lease_id=debit.lease_id,
            started_at_ms=now_ms(),
            ended_at_ms=now_ms(),
        )
        await publish(self.redis, event, self.settings.usage_stream)
        book.finish(debit, MINI.provider, MINI.model, USED, published=True)

    async def leases(self, user: str) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT * FROM billing.leases WHERE user_id = $1 ORDER BY created_at", user
        )

    async def available(self, user: str) -> int:
        return int(
            await self.db.fetchval(
                "SELECT available_micros FROM billing.accounts WHERE user_id = $1", user
            )
        )

    async def assert_invariant(self, user: str) -> None:
        """available + open holds + the unspent part of open leases = the ledger's sum."""
        row = await self.db.fetchrow(
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


def who(user: str) -> Caller:
    return Caller(service="gateway", user_id=user, is_member=True, request_id=uuid.uuid4().hex)


def open_lease_calls() -> float:
    """OpenLease calls billing-svc has served in this process, from its metrics."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == "grpc_server_handled_total"
        and sample.labels.get("grpc_method") == "OpenLease"
    )


LEASE_RESULTS = {
    "credit_lease_opens_total": ("opened", "no_lease", "too_short", "failed"),
    "credit_lease_debits_total": ("lease", "reserve"),
    "credit_lease_closes_total": ("closed", "retry", "unknown", "expired", "expired_in_flight"),
}


def lease_metrics() -> dict[str, float]:
    """This process's credit lease metrics for backend type text: 'opens:opened', ...; 'open' is
    the gauge of leases held and not closed yet."""
    values = {"open": REGISTRY.get_sample_value("credit_leases_open", {"backend_type": "text"})}
    for name, results in LEASE_RESULTS.items():
        family = name.removeprefix("credit_lease_").removesuffix("_total")
        for result in results:
            labels = {"backend_type": "text", "result": result}
            values[f"{family}:{result}"] = REGISTRY.get_sample_value(name, labels)
    return {key: value or 0.0 for key, value in values.items()}


class Moved:
    """The lease metrics that changed since it was made, by how much."""

    def __init__(self) -> None:
        self.before = lease_metrics()

    def __call__(self) -> dict[str, float]:
        after = lease_metrics()
        return {k: after[k] - self.before[k] for k in after if after[k] != self.before[k]}

    async def reach(self, expected: dict[str, float], what: str) -> None:
        async def reached() -> bool:
            return self() == expected

        try:
            await eventually(reached, what=what)
        except AssertionError:
            raise AssertionError(f"{what}: {self()} != {expected}") from None


@pytest.fixture
def billing_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def world(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    billing_overrides: dict[str, Any],
) -> AsyncIterator[World]:
    settings = BillingSettings(
        environment="test",
        service_token_secret=SECRET,
        database_url=database_url,
        redis_url=redis_url,
        usage_stream=f"{redis_prefix}usage-events",
        consumer_group=f"{redis_prefix}billing",
        dead_letter_stream=f"{redis_prefix}usage-events-dead",
        block_ms=100,
        sweep_interval_s=0.2,
        price_cache_s=0,
        **billing_overrides,
    )
    server = create_server(settings)
    await server.start()
    db = await asyncpg.connect(database_url)
    world = World(server, db, redis_client)
    try:
        yield world
    finally:
        for book in world.books:
            await book.aclose()
        await world.client.aclose()
        await db.close()
        await world.server.stop(5)  # the one running (a test may have replaced it)
        await redis_client.delete(settings.usage_stream, settings.dead_letter_stream)


async def test_requests_debit_one_lease_and_its_close_returns_the_rest(world: World) -> None:
    await world.grant("alice", 1_000_000)
    book = world.book()
    alice = who("alice")
    moved = Moved()

    debits = [await book.take(alice, [MINI], WORST, 5.0) for _ in range(3)]
    assert moved() == {"opens:opened": 1, "debits:lease": 3, "open": 1}
    [lease] = await world.leases("alice")
    assert lease["amount_micros"] == LEASE_REQUESTS * UNIT  # the balance spares 16 of them
    assert lease["holder"] == "test-host-1" and lease["status"] == "open"
    assert all(d is not None and d.lease_id == lease["lease_id"] for d in debits)
    # What the user has, as the balance header shows it: the rest of the balance and the part of
    # the lease not set aside for requests in flight.
    at_open = 1_000_000 - lease["amount_micros"]
    assert await world.available("alice") == at_open
    assert [d.balance_micros for d in debits if d] == [
        at_open + lease["amount_micros"] - n * UNIT for n in (1, 2, 3)
    ]
    await world.assert_invariant("alice")

    for debit in debits:
        assert debit is not None
        await world.finish(book, alice, debit)
    # Each ended request gave back what its worst case did not cost.
    fourth = await book.take(alice, [MINI], WORST, 5.0)
    assert fourth is not None and fourth.lease_id == lease["lease_id"]
    assert fourth.balance_micros == 1_000_000 - 3 * COST - UNIT
    await world.finish(book, alice, fourth)

    await book.aclose()
    assert moved() == {"opens:opened": 1, "debits:lease": 4, "closes:closed": 1}

    async def returned() -> asyncpg.Record | None:
        [row] = await world.leases("alice")
        return row if row["status"] == "returned" else None

    row = await eventually(returned, what="the lease returned")
    assert (row["expected_events"], row["events"], row["spent_micros"]) == (4, 4, 4 * COST)
    charges = await world.db.fetch(
        "SELECT * FROM billing.ledger WHERE user_id = 'alice' AND kind = 'charge'"
    )
    assert len(charges) == 4
    assert all(c["lease_id"] == lease["lease_id"] and c["cost_micros"] == COST for c in charges)
    assert await world.available("alice") == 1_000_000 - 4 * COST
    await world.assert_invariant("alice")


async def test_concurrent_requests_wait_for_one_open_lease(world: World) -> None:
    await world.grant("alice", 1_000_000)
    book = world.book()
    calls = open_lease_calls()
    moved = Moved()

    debits = await asyncio.gather(
        *(book.take(who("alice"), [MINI], WORST, 5.0) for _ in range(LEASE_REQUESTS))
    )
    assert open_lease_calls() - calls == 1
    assert moved() == {"opens:opened": 1, "debits:lease": LEASE_REQUESTS, "open": 1}
    [lease] = await world.leases("alice")
    assert {d.lease_id for d in debits if d} == {lease["lease_id"]}
    assert len([d for d in debits if d]) == LEASE_REQUESTS

    # The lease is spent: the next request gets a new one; the first is closed only once its
    # requests have ended.
    after = await book.take(who("alice"), [MINI], WORST, 5.0)
    assert after is not None and after.lease_id != lease["lease_id"]
    assert open_lease_calls() - calls == 2
    # The spent lease still counts as open: its requests are in flight.
    assert moved() == {"opens:opened": 2, "debits:lease": LEASE_REQUESTS + 1, "open": 2}
    for debit in debits:
        assert debit is not None
        await world.finish(book, who("alice"), debit)

    async def first_returned() -> bool:
        rows = {r["lease_id"]: r for r in await world.leases("alice")}
        return rows[lease["lease_id"]]["status"] == "returned"

    await eventually(first_returned, what="the spent lease returned")
    rows = {r["lease_id"]: r for r in await world.leases("alice")}
    assert rows[after.lease_id]["status"] == "open"  # still in use
    assert rows[lease["lease_id"]]["spent_micros"] == LEASE_REQUESTS * COST
    await world.assert_invariant("alice")
    await moved.reach(
        {"opens:opened": 2, "debits:lease": LEASE_REQUESTS + 1, "closes:closed": 1, "open": 1},
        "the spent lease counted closed",
    )


async def test_a_balance_that_cannot_spare_a_lease_answers_none_and_is_not_asked_again(
    world: World,
) -> None:
    # A quarter of the balance is less than one request's worst case: no lease.
    await world.grant("bob", 3 * UNIT)
    book = world.book()
    calls = open_lease_calls()
    moved = Moved()
    assert await book.take(who("bob"), [MINI], WORST, 5.0) is None
    assert await book.take(who("bob"), [MINI], WORST, 5.0) is None
    assert open_lease_calls() - calls == 1  # the second request reserved without asking
    assert moved() == {"opens:no_lease": 1, "debits:reserve": 2}
    assert await world.leases("bob") == []
    assert await world.available("bob") == 3 * UNIT


async def test_an_unpriced_route_is_refused_before_anything_is_set_aside(world: World) -> None:
    await world.grant("carol", 1_000_000)
    book = world.book()
    moved = Moved()
    with pytest.raises(FailedPrecondition) as caught:
        await book.take(who("carol"), [MINI, Route("openai", "no-such-model")], WORST, 5.0)
    assert "no price for openai/no-such-model" in caught.value.message
    assert "fallback" in caught.value.message
    # Refused as a Reserve would be: neither a debit nor a reserve after it.
    assert moved() == {"opens:failed": 1}
    assert await world.leases("carol") == []
    assert await world.available("carol") == 1_000_000


async def test_an_idle_lease_is_closed_once_no_request_is_in_flight(world: World) -> None:
    await world.grant("alice", 1_000_000)
    await world.grant("bob", 1_000_000)
    book = world.book(idle_s=0.2)
    alice, bob = who("alice"), who("bob")
    moved = Moved()
    in_flight = await book.take(alice, [MINI], WORST, 5.0)
    done = await book.take(bob, [MINI], WORST, 5.0)
    assert in_flight is not None and done is not None
    await world.finish(book, bob, done)

    async def bobs_returned() -> bool:
        [row] = await world.leases("bob")
        return row["status"] == "returned"

    # The round that closed bob's idle lease saw alice's, as idle, with a request in flight.
    await eventually(bobs_returned, what="bob's idle lease returned")
    [alices] = await world.leases("alice")
    assert alices["status"] == "open"
    await moved.reach(
        {"opens:opened": 2, "debits:lease": 2, "closes:closed": 1, "open": 1},
        "bob's lease counted closed, alice's open",
    )

    await world.finish(book, alice, in_flight)

    async def alices_returned() -> asyncpg.Record | None:
        [row] = await world.leases("alice")
        return row if row["status"] == "returned" else None

    row = await eventually(alices_returned, what="alice's lease returned after her request")
    assert (row["expected_events"], row["spent_micros"]) == (1, COST)
    assert await world.available("alice") == 1_000_000 - COST
    await world.assert_invariant("alice")
    await world.assert_invariant("bob")
    await moved.reach(
        {"opens:opened": 2, "debits:lease": 2, "closes:closed": 2}, "both leases counted closed"
    )


@pytest.mark.parametrize("billing_overrides", [{"lease_use_s": 3}])
async def test_no_request_starts_on_a_lease_near_its_use_until(world: World) -> None:
    await world.grant("dave", 1_000_000)
    book = world.book()
    dave = who("dave")
    first = await book.take(dave, [MINI], WORST, 5.0)
    assert first is not None
    [lease] = await world.leases("dave")

    use_until = lease["use_until"].timestamp()

    async def a_new_lease() -> Debit | None:
        debit = await book.take(dave, [MINI], WORST, 5.0)
        taken_at = time.time()
        assert debit is not None
        if debit.lease_id == first.lease_id:
            # Never within a second of its use-until: started in time by billing-svc's clock.
            assert taken_at < use_until
            await world.finish(book, dave, debit)
            return None
        return debit

    second = await eventually(a_new_lease, what="a request on a new lease")
    await world.finish(book, dave, first)
    await world.finish(book, dave, second)

    async def first_returned() -> bool:
        rows = {r["lease_id"]: r for r in await world.leases("dave")}
        return rows[first.lease_id]["status"] == "returned"

    await eventually(first_returned, what="the first lease returned")
    await world.assert_invariant("dave")


def test_a_service_that_holds_per_request_refuses_credit_lease() -> None:
    class Settings(ModelServiceSettings):
        model_config = SettingsConfigDict(env_prefix="IMAGE_SVC_", extra="ignore")

    settings = Settings(
        environment="test",
        billing_target="127.0.0.1:1",
        service_token=mint_service_token(SECRET, "image-svc"),
        credit_lease=True,
    )
    # image-svc takes a hold per request: turning leases on is a mistake said at start-up.
    with pytest.raises(RuntimeError, match="IMAGE_SVC_CREDIT_LEASE"):
        Metering(settings, None, "image")


async def test_a_close_that_billing_svc_missed_is_made_again_once_it_is_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.grant("erin", 1_000_000)
    book = world.book(idle_s=0.2)
    erin = who("erin")
    moved = Moved()
    debit = await book.take(erin, [MINI], WORST, 5.0)
    assert debit is not None
    await world.finish(book, erin, debit)

    async def charged() -> bool:
        [row] = await world.leases("erin")
        return bool(row["events"] == 1)

    await eventually(charged, what="the request charged against the lease")
    port = world.server.port
    await world.server.stop(5)

    async def close_refused() -> bool:
        return "not closed (UNAVAILABLE); trying again" in caplog.text

    await eventually(close_refused, what="a close that billing-svc did not answer")
    [row] = await world.leases("erin")
    assert row["status"] == "open"
    refused = moved()
    assert refused.pop("closes:retry") >= 1
    assert refused == {"opens:opened": 1, "debits:lease": 1, "open": 1}

    # billing-svc back on the same address (as a restarted replica is).
    world.server = create_server(world.settings.model_copy(update={"listen": f"127.0.0.1:{port}"}))
    await world.server.start()

    async def returned() -> asyncpg.Record | None:
        [row] = await world.leases("erin")
        return row if row["status"] == "returned" else None

    row = await eventually(returned, what="the lease closed once billing-svc was back")
    assert (row["expected_events"], row["spent_micros"]) == (1, COST)
    assert await world.available("erin") == 1_000_000 - COST
    await world.assert_invariant("erin")

    async def counted_closed() -> bool:
        return moved().get("closes:closed") == 1

    await eventually(counted_closed, what="the close counted")
    closed = moved()
    assert closed.pop("closes:retry") >= 1
    assert closed == {"opens:opened": 1, "debits:lease": 1, "closes:closed": 1}


@pytest.mark.parametrize("billing_overrides", [{"lease_use_s": 0.5}])
async def test_a_lease_too_short_to_use_is_given_back_and_requests_reserve(world: World) -> None:
    # BILLING_SVC_LEASE_USE_S under the book's margin: no request may start on such a lease.
    await world.grant("gina", 1_000_000)
    book = world.book()
    moved = Moved()
    assert await book.take(who("gina"), [MINI], WORST, 5.0) is None
    assert await book.take(who("gina"), [MINI], WORST, 5.0) is None  # not asked again
    assert moved() == {"opens:too_short": 1, "debits:reserve": 2, "open": 1}

    async def returned() -> bool:
        [row] = await world.leases("gina")
        return row["status"] in ("returned", "expired")

    await eventually(returned, what="the short lease given back")
    await moved.reach(
        {"opens:too_short": 1, "debits:reserve": 2, "closes:closed": 1}, "the close counted"
    )
    assert await world.available("gina") == 1_000_000
    await world.assert_invariant("gina")


@pytest.mark.parametrize("billing_overrides", [{"lease_use_s": 2.0, "hold_ttl_s": 1}])
async def test_a_lease_whose_request_never_ends_is_dropped_at_expiry(world: World) -> None:
    await world.grant("hank", 1_000_000)
    book = world.book()
    # A request that never ends (its usage event never comes): the book cannot close the lease.
    debit = await book.take(who("hank"), [MINI], WORST, 5.0)
    assert debit is not None
    moved = Moved()
    await moved.reach({"closes:expired_in_flight": 1, "open": -1}, "the lease dropped at expiry")

    async def swept() -> bool:
        [row] = await world.leases("hank")
        return row["status"] == "expired"

    # billing-svc's sweeper gives all of it back: nothing was charged against it.
    await eventually(swept, what="the lease swept back")
    assert await world.available("hank") == 1_000_000
    await world.assert_invariant("hank")


async def test_shutdown_during_a_close_round_still_returns_the_lease(world: World) -> None:
    """A close round that shutdown interrupts must not lose its leases: they would stay open in
    billing-svc, the user's credits set aside, until they expire."""
    await world.grant("alice", 1_000_000)
    book = world.book(idle_s=0.2)
    alice = who("alice")
    debit = await book.take(alice, [MINI], WORST, 5.0)
    assert debit is not None
    await world.finish(book, alice, debit)

    # Stall the round's CloseLease on the account's row lock (billing-svc takes it first).
    blocker = await asyncpg.connect(world.settings.database_url.get_secret_value())
    try:
        stalled = blocker.transaction()
        await stalled.start()
        await blocker.execute("SELECT 1 FROM billing.accounts WHERE user_id = 'alice' FOR UPDATE")

        async def close_waiting_on_the_lock() -> bool:
            return bool(
                await world.db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query ILIKE '%billing.accounts%' AND datname = current_database()"
                )
            )

        await eventually(close_waiting_on_the_lock, what="the idle lease's close in progress")
        shutdown = asyncio.ensure_future(book.aclose())
        await asyncio.sleep(0)  # shutdown has begun while the round is mid-way
        await stalled.rollback()
        await shutdown
    finally:
        await blocker.close()

    [row] = await world.leases("alice")
    assert row["status"] == "returned"
    assert await world.available("alice") == 1_000_000 - COST
    await world.assert_invariant("alice")
