"""Credit leases over real gRPC, Postgres and Redis: OpenLease sets credits aside like a hold,
usage events naming the lease are charged against it once each, CloseLease and the sweeper give
the unspent rest back, and holds and leases together never exceed the balance.

After every scenario: available + open holds + unspent leases = the sum of the user's ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from billing_test_support import Billing, usage_event, wait_for

from grpc_stubs.billing.v1 import billing_pb2
from grpc_stubs.common.v1 import common_pb2
from svc_common.errors import INSUFFICIENT_CREDITS, RemoteError, from_rpc_error
from svc_common.metrics import REGISTRY

pytestmark = pytest.mark.timeout(120)

# gpt-4o-mini: 0.15 credits per 1M input tokens, 0.60 per 1M output tokens.
WORST_CASE_MICROS = 150 + 600  # 1,000 input + 1,000 output tokens
USAGE_MICROS = 15 + 120  # 100 input + 200 output tokens (usage_event's default)
# gpt-4o: 2.5 and 10 credits per 1M.
GPT_4O_WORST_CASE_MICROS = 2_500 + 10_000

MINI = ("openai", "gpt-4o-mini")
INT64_MAX = 2**63 - 1


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def open_lease(
    billing: Billing,
    user_id: str,
    *,
    routes: Sequence[tuple[str, str]] = (MINI,),
    input_tokens: int = 1_000,
    output_tokens: int = 1_000,
    backend_type: int = common_pb2.BACKEND_TYPE_TEXT,
    holder: str = "text-svc-test-1",
    **usage: Any,
) -> billing_pb2.Lease:
    return await billing.stub.OpenLease(
        billing_pb2.OpenLeaseRequest(
            backend_type=backend_type,
            routes=[billing_pb2.Route(provider=p, model=m) for p, m in routes],
            worst_case=common_pb2.Usage(
                input_tokens=input_tokens, output_tokens=output_tokens, **usage
            ),
            holder=holder,
        ),
        metadata=billing.as_user(user_id),
        timeout=10,
    )


async def close_lease(
    billing: Billing, user_id: str, lease_id: str, requests: int
) -> billing_pb2.CloseLeaseResponse:
    return await billing.stub.CloseLease(
        billing_pb2.CloseLeaseRequest(lease_id=lease_id, requests=requests),
        metadata=billing.as_user(user_id),
        timeout=10,
    )


async def refused(call: Any) -> RemoteError:
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        return from_rpc_error(err)
    raise AssertionError(f"expected the call to fail, got {result!r}")


async def lease_row(billing: Billing, lease_id: str) -> dict[str, Any]:
    row = await billing.pool.fetchrow("SELECT * FROM billing.leases WHERE lease_id = $1", lease_id)
    assert row is not None, f"no lease {lease_id}"
    return dict(row)


async def available(billing: Billing, user_id: str) -> int:
    value: int = await billing.pool.fetchval(
        "SELECT available_micros FROM billing.accounts WHERE user_id = $1", user_id
    )
    return value


async def wait_lease_status(billing: Billing, lease_id: str, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        return (await lease_row(billing, lease_id))["status"] == status

    await wait_for(reached, 15, f"lease {lease_id} {status}")
    return await lease_row(billing, lease_id)


# -- opening ---------------------------------------------------------------------------------


async def test_a_lease_is_sized_in_requests_and_set_aside_like_a_hold(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)

    before = time.time()
    lease = await open_lease(billing, alice)

    # 16 requests of the worst case (BILLING_SVC_LEASE_REQUESTS), below a quarter of the balance.
    assert lease.lease_id.startswith("lease_")
    assert lease.amount_micros == 16 * WORST_CASE_MICROS
    assert lease.balance_micros == 84 * WORST_CASE_MICROS
    assert before + 30 - 2 <= lease.use_until <= time.time() + 30
    assert lease.expires_at - lease.use_until in (600, 601)  # + BILLING_SVC_HOLD_TTL_S
    assert sorted(
        (p.provider, p.model, p.unit, p.image_size, p.image_quality, p.price_micros, p.per_units)
        for p in lease.prices
    ) == [
        ("openai", "gpt-4o-mini", "input_token", "", "", 150_000, 1_000_000),
        ("openai", "gpt-4o-mini", "output_token", "", "", 600_000, 1_000_000),
    ]
    row = await lease_row(billing, lease.lease_id)
    assert (row["user_id"], row["holder"], row["backend_type"], row["status"]) == (
        alice,
        "text-svc-test-1",
        "text",
        "open",
    )
    assert (row["amount_micros"], row["spent_micros"], row["events"]) == (lease.amount_micros, 0, 0)
    assert row["expected_events"] is None and row["returned_at"] is None
    opened = await billing.ledger_row(f"lease:{lease.lease_id}")
    assert (opened["kind"], opened["amount_micros"], opened["hold_micros"]) == (
        "lease",
        0,
        lease.amount_micros,
    )
    assert opened["lease_id"] == lease.lease_id and opened["hold_id"] is None
    assert await available(billing, alice) == 84 * WORST_CASE_MICROS
    # Still the user's credits: the balance counts the lease, the holds do not.
    balance = await billing.balance(alice)
    assert (balance.balance_micros, balance.held_micros) == (100 * WORST_CASE_MICROS, 0)
    await billing.assert_consistent(alice)


async def test_a_lease_takes_at_most_a_share_of_the_balance_and_prices_the_dearest_route(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 20 * GPT_4O_WORST_CASE_MICROS)

    lease = await open_lease(billing, alice, routes=[MINI, ("openai", "gpt-4o")])

    # A quarter of the balance (BILLING_SVC_LEASE_SHARE_DIVISOR): 5 requests on the dearer route.
    assert lease.amount_micros == 5 * GPT_4O_WORST_CASE_MICROS
    assert lease.balance_micros == 15 * GPT_4O_WORST_CASE_MICROS
    assert {(p.model, p.unit) for p in lease.prices} == {
        ("gpt-4o-mini", "input_token"),
        ("gpt-4o-mini", "output_token"),
        ("gpt-4o", "input_token"),
        ("gpt-4o", "output_token"),
    }
    # A second process's lease takes a quarter of what is left.
    second = await open_lease(billing, alice, routes=[MINI, ("openai", "gpt-4o")])
    assert second.amount_micros == 15 * GPT_4O_WORST_CASE_MICROS // 4
    await billing.assert_consistent(alice)


@pytest.mark.parametrize(
    "settings_overrides", [{"lease_requests": 3, "lease_share_divisor": 2, "lease_use_s": 5}]
)
async def test_lease_sizing_follows_the_settings(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    assert lease.amount_micros == 3 * WORST_CASE_MICROS
    assert lease.use_until <= time.time() + 5
    bob = user()
    await billing.grant(bob, 5 * WORST_CASE_MICROS)
    assert (await open_lease(billing, bob)).amount_micros == 5 * WORST_CASE_MICROS // 2


async def test_a_low_balance_gets_no_lease_and_nothing_is_set_aside(billing: Billing) -> None:
    alice = user()
    # A quarter of the balance does not cover one request: reserve per request instead.
    await billing.grant(alice, 4 * WORST_CASE_MICROS - 1)

    lease = await open_lease(billing, alice)

    assert lease.lease_id == "" and lease.amount_micros == 0 and not lease.prices
    assert lease.balance_micros == 4 * WORST_CASE_MICROS - 1
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.leases") == 0
    assert (
        await billing.pool.fetchval("SELECT count(*) FROM billing.ledger WHERE kind = 'lease'") == 0
    )
    assert await available(billing, alice) == 4 * WORST_CASE_MICROS - 1
    # The Reserve it falls back to still holds.
    assert (await billing.reserve(alice, "req-1")).amount_micros == WORST_CASE_MICROS
    await billing.assert_consistent(alice)


@pytest.mark.parametrize("settings_overrides", [{"starting_balance_micros": 40 * 750}])
async def test_a_users_first_lease_creates_the_account_with_its_starting_balance(
    billing: Billing,
) -> None:
    alice = user()
    lease = await open_lease(billing, alice)
    assert lease.amount_micros == 10 * WORST_CASE_MICROS
    assert lease.balance_micros == 30 * WORST_CASE_MICROS
    await billing.assert_consistent(alice)
    # Without credits there is no lease, and the account exists all the same.
    assert (await open_lease(billing, user(), input_tokens=10**6)).lease_id == ""


async def test_a_free_route_gets_a_lease_of_nothing(billing: Billing) -> None:
    # Operators price a model at 0 (gpt-image-2's per-image rows are 0).
    alice = user()
    await billing.grant(alice, 1_000)
    lease = await open_lease(
        billing,
        alice,
        routes=[("openai", "gpt-image-2")],
        input_tokens=0,
        output_tokens=0,
        images=1,
        backend_type=common_pb2.BACKEND_TYPE_IMAGE,
    )
    assert lease.lease_id and lease.amount_micros == 0 and lease.balance_micros == 1_000
    await billing.assert_consistent(alice)


@pytest.mark.parametrize(
    ("routes", "says"),
    [
        ([("openai", "no-such-model")], "no price for openai/no-such-model"),
        ([MINI, ("openai", "no-such-model")], "cannot be the fallback of a member request"),
    ],
)
async def test_an_unpriced_route_is_refused_like_a_reserve(
    billing: Billing, routes: list[tuple[str, str]], says: str
) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    err = await refused(open_lease(billing, alice, routes=routes))
    reserve_err = await refused(
        billing.reserve(
            alice,
            "req-1",
            provider=routes[0][0],
            model=routes[0][1],
        )
        if len(routes) == 1
        else billing.stub.Reserve(
            billing_pb2.ReserveRequest(
                request_id="req-1",
                backend_type=common_pb2.BACKEND_TYPE_TEXT,
                provider=routes[0][0],
                model=routes[0][1],
                worst_case=common_pb2.Usage(input_tokens=1_000, output_tokens=1_000),
                alternatives=[billing_pb2.Route(provider=p, model=m) for p, m in routes[1:]],
            ),
            metadata=billing.as_user(alice),
            timeout=10,
        )
    )
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.param == "model"
    assert says in err.message
    assert (err.code, err.message, err.param) == (
        reserve_err.code,
        reserve_err.message,
        reserve_err.param,
    )
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.leases") == 0
    assert await available(billing, alice) == 100 * WORST_CASE_MICROS


async def test_a_huge_request_price_never_overflows_the_lease_size(billing: Billing) -> None:
    # 16 requests at an operator's price of 2**60 would pass bigint: the size is capped first.
    await billing.pool.execute(
        "INSERT INTO billing.prices (provider, model, unit, price_micros, per_units)"
        " VALUES ('stability', 'dear', 'image', $1, 1)",
        2**60,
    )
    alice = user()
    await billing.grant(alice, 2**62)
    lease = await open_lease(
        billing,
        alice,
        routes=[("stability", "dear")],
        input_tokens=0,
        output_tokens=0,
        images=1,
        backend_type=common_pb2.BACKEND_TYPE_IMAGE,
    )
    assert lease.amount_micros == 2**60 and lease.balance_micros == 2**62 - 2**60
    await billing.assert_consistent(alice)


# -- bad input -------------------------------------------------------------------------------


def lease_request(**fields: Any) -> billing_pb2.OpenLeaseRequest:
    values: dict[str, Any] = {
        "backend_type": common_pb2.BACKEND_TYPE_TEXT,
        "routes": [billing_pb2.Route(provider="openai", model="gpt-4o-mini")],
        "worst_case": common_pb2.Usage(input_tokens=1_000, output_tokens=1_000),
        "holder": "text-svc-test-1",
    }
    values.update(fields)
    return billing_pb2.OpenLeaseRequest(**values)


def route(provider: str = "openai", model: str = "gpt-4o-mini") -> billing_pb2.Route:
    return billing_pb2.Route(provider=provider, model=model)


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"routes": []}, "routes", "routes are required"),
        ({"routes": [route()] * 6}, "routes", "at most 5 routes"),
        ({"routes": [route(model="")]}, "routes", "provider and a model"),
        ({"routes": [route(provider="open\x00ai")]}, "routes.provider", "printable"),
        ({"routes": [route(), route(model="x" * 257)]}, "routes.model", "at most 256"),
        ({"backend_type": common_pb2.BACKEND_TYPE_UNSPECIFIED}, "backend_type", "required"),
        ({"worst_case": common_pb2.Usage(output_tokens=-1)}, "worst_case", "not be negative"),
        ({"worst_case": common_pb2.Usage(output_tokens=10**12)}, "worst_case", "below"),
        ({"worst_case": common_pb2.Usage(output_tokens=INT64_MAX)}, "worst_case", "below"),
        (
            {"worst_case": common_pb2.Usage(images=1, image_size="1024\x07")},
            "worst_case.image_size",
            "printable",
        ),
        ({"holder": "host\n42"}, "holder", "printable"),
    ],
)
async def test_bad_open_lease_input_is_a_clear_error_and_writes_nothing(
    billing: Billing, fields: dict[str, Any], param: str, says: str
) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    err = await refused(
        billing.stub.OpenLease(lease_request(**fields), metadata=billing.as_user(alice), timeout=10)
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.param == param and says in err.message
    assert "\x00" not in err.message and "\x07" not in err.message
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.leases") == 0
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.ledger") == 1  # the grant
    assert await available(billing, alice) == 100 * WORST_CASE_MICROS


async def test_a_worst_case_costing_more_than_any_balance_is_invalid_argument(
    billing: Billing,
) -> None:
    await billing.pool.execute(
        "INSERT INTO billing.prices (provider, model, unit, price_micros, per_units)"
        " VALUES ('stability', 'priceless', 'image', $1, 1)",
        INT64_MAX,
    )
    alice = user()
    await billing.grant(alice, 10**15)
    err = await refused(
        open_lease(
            billing,
            alice,
            routes=[("stability", "priceless")],
            input_tokens=0,
            output_tokens=0,
            images=2,
            backend_type=common_pb2.BACKEND_TYPE_IMAGE,
        )
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.param == "worst_case"
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.leases") == 0


@pytest.mark.parametrize(
    ("lease_id", "requests", "param"),
    [("", 0, "lease_id"), ("lease_\x00", 0, "lease_id"), ("x" * 257, 0, "lease_id")],
)
async def test_bad_close_lease_input_is_a_clear_error(
    billing: Billing, lease_id: str, requests: int, param: str
) -> None:
    err = await refused(close_lease(billing, user(), lease_id, requests))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.param == param


async def test_closing_with_negative_requests_is_refused_and_changes_nothing(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    err = await refused(close_lease(billing, alice, lease.lease_id, -1))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.param == "requests"
    assert (await lease_row(billing, lease.lease_id))["status"] == "open"


# -- charging --------------------------------------------------------------------------------


async def test_usage_events_are_charged_against_the_lease_once_each(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    events = [usage_event(alice, lease_id=lease.lease_id) for _ in range(3)]
    for event in events:
        await billing.publish(event)
    # A publisher's retry and a redelivery: the same event ids again.
    await billing.publish(events[0])
    await billing.publish(events[2])
    await billing.wait_applied(alice, 3)

    for event in events:
        row = await billing.ledger_row(event.event_id)
        assert (row["kind"], row["amount_micros"], row["cost_micros"]) == (
            "charge",
            -USAGE_MICROS,
            USAGE_MICROS,
        )
        assert (row["lease_id"], row["hold_id"], row["hold_micros"], row["shortfall_micros"]) == (
            lease.lease_id,
            None,
            USAGE_MICROS,
            0,
        )
    row = await lease_row(billing, lease.lease_id)
    assert (row["spent_micros"], row["events"], row["status"]) == (3 * USAGE_MICROS, 3, "open")
    # Charged against the credits set aside: available did not move.
    assert await available(billing, alice) == lease.balance_micros
    assert (await billing.balance(alice)).balance_micros == 100 * WORST_CASE_MICROS - 3 * (
        USAGE_MICROS
    )
    assert await billing.ledger_count(alice) == 3
    await billing.assert_consistent(alice)


async def test_usage_beyond_the_lease_is_taken_from_the_balance_then_recorded_as_shortfall(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 4 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    assert lease.amount_micros == WORST_CASE_MICROS
    # 10 x the worst case: the lease pays its all, the balance all it has, the rest is shortfall.
    big = usage_event(alice, lease_id=lease.lease_id, input_tokens=10_000, output_tokens=10_000)
    await billing.publish(big)
    await billing.wait_applied(alice, 1)

    row = await billing.ledger_row(big.event_id)
    assert row["cost_micros"] == 10 * WORST_CASE_MICROS
    assert row["hold_micros"] == WORST_CASE_MICROS
    assert row["amount_micros"] == -4 * WORST_CASE_MICROS
    assert row["shortfall_micros"] == 6 * WORST_CASE_MICROS
    assert await available(billing, alice) == 0
    lease_now = await lease_row(billing, lease.lease_id)
    assert lease_now["spent_micros"] == lease_now["amount_micros"]
    await billing.assert_consistent(alice)


async def test_an_event_naming_another_users_lease_is_charged_without_it(
    billing: Billing,
) -> None:
    alice, bob = user(), user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    await billing.grant(bob, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    # bob's event names alice's lease (alone, and in a batch with one of alice's own).
    stolen = usage_event(bob, lease_id=lease.lease_id)
    own = usage_event(alice, lease_id=lease.lease_id)
    await billing.publish(stolen)
    await billing.publish(own)
    await billing.wait_applied(bob, 1)
    await billing.wait_applied(alice, 1)

    row = await billing.ledger_row(stolen.event_id)
    assert (row["amount_micros"], row["hold_micros"], row["lease_id"]) == (-USAGE_MICROS, 0, None)
    assert await available(billing, bob) == 100 * WORST_CASE_MICROS - USAGE_MICROS
    lease_now = await lease_row(billing, lease.lease_id)
    assert (lease_now["spent_micros"], lease_now["events"]) == (USAGE_MICROS, 1)
    await billing.assert_consistent(alice)
    await billing.assert_consistent(bob)


async def test_an_event_with_a_hold_settles_the_hold_not_the_lease(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    hold = await billing.reserve(alice, "req-held")
    await billing.publish(
        usage_event(alice, event_id="req-held", hold_id=hold.hold_id, lease_id=lease.lease_id)
    )
    await billing.wait_applied(alice, 1)
    assert (await lease_row(billing, lease.lease_id))["events"] == 0
    assert (await billing.ledger_row("req-held"))["hold_id"] == "req-held"
    await billing.assert_consistent(alice)


async def delete_price(billing: Billing, provider: str, model: str) -> None:
    """An operator withdraws a model's price (read fresh: BILLING_SVC_PRICE_CACHE_S is 0)."""
    await billing.pool.execute(
        "DELETE FROM billing.prices WHERE provider = $1 AND model = $2", provider, model
    )


def charged_unpriced(caplog: pytest.LogCaptureFixture) -> list[int]:
    """What the consumer's error log says it charged, per unpriced gpt-4o-mini lease event."""
    charged = []
    for record in caplog.records:
        message = record.getMessage()
        if record.name == "billing_svc.settlement" and record.levelno == logging.ERROR:
            assert message.startswith("no price for openai/gpt-4o-mini"), message
            head, _, tail = message.rpartition("; charging the lease debit (")
            assert head and tail.endswith(" micro-credits)"), message
            charged.append(int(tail.removesuffix(" micro-credits)")))
    return charged


async def test_a_price_removed_while_a_lease_is_open_charges_the_debited_worst_case(
    billing: Billing, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="billing_svc.settlement")
    alice = user()
    await billing.grant(alice, 4 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    assert lease.amount_micros == WORST_CASE_MICROS  # a quarter of the balance
    await delete_price(billing, *MINI)
    # Each request's holder debited its worst case from the lease before the call; billing can
    # no longer price the usage, so that worst case is the charge (as a hold's amount is). The
    # first takes the lease's all, the second is paid by the balance.
    first, second = (
        usage_event(alice, lease_id=lease.lease_id, lease_debit_micros=WORST_CASE_MICROS)
        for _ in range(2)
    )
    # A request that failed before generating anything costs nothing, priced or not.
    failed = usage_event(
        alice,
        lease_id=lease.lease_id,
        lease_debit_micros=WORST_CASE_MICROS,
        outcome="error",
        input_tokens=0,
        output_tokens=0,
    )
    await billing.publish(first)
    await billing.publish(failed)
    await billing.publish(second)
    await billing.wait_applied(alice, 3)

    row = await billing.ledger_row(first.event_id)
    assert (row["amount_micros"], row["cost_micros"], row["shortfall_micros"]) == (
        -WORST_CASE_MICROS,
        WORST_CASE_MICROS,
        0,
    )
    assert (row["hold_micros"], row["lease_id"]) == (WORST_CASE_MICROS, lease.lease_id)
    row = await billing.ledger_row(second.event_id)
    assert (row["amount_micros"], row["cost_micros"], row["shortfall_micros"]) == (
        -WORST_CASE_MICROS,
        WORST_CASE_MICROS,
        0,
    )
    assert (row["hold_micros"], row["lease_id"]) == (0, lease.lease_id)
    row = await billing.ledger_row(failed.event_id)
    assert (row["amount_micros"], row["cost_micros"], row["lease_id"]) == (0, 0, lease.lease_id)
    lease_now = await lease_row(billing, lease.lease_id)
    assert (lease_now["spent_micros"], lease_now["events"]) == (WORST_CASE_MICROS, 3)
    assert await available(billing, alice) == 2 * WORST_CASE_MICROS
    assert (await billing.balance(alice)).balance_micros == 2 * WORST_CASE_MICROS
    assert charged_unpriced(caplog) == [WORST_CASE_MICROS, WORST_CASE_MICROS]
    await billing.assert_consistent(alice)


async def test_an_unpriced_lease_event_without_its_debit_is_logged_and_charged_nothing(
    billing: Billing, caplog: pytest.LogCaptureFixture
) -> None:
    # Events queued by a text-svc from before lease_debit_micros existed (still in the stream
    # when billing-svc is upgraded) do not say what was debited: billing cannot price them and
    # has nothing to charge in its place, so they cost nothing and the error log says so.
    caplog.set_level(logging.ERROR, logger="billing_svc.settlement")
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    await delete_price(billing, *MINI)
    old = usage_event(alice, lease_id=lease.lease_id)
    fields = old.to_fields()
    del fields["lease_debit_micros"]  # as an older text-svc wrote it
    await billing.redis.xadd(billing.settings.usage_stream, fields)
    await billing.wait_applied(alice, 1)

    row = await billing.ledger_row(old.event_id)
    assert (row["amount_micros"], row["cost_micros"], row["hold_micros"], row["lease_id"]) == (
        0,
        0,
        0,
        lease.lease_id,
    )
    lease_now = await lease_row(billing, lease.lease_id)
    assert (lease_now["spent_micros"], lease_now["events"]) == (0, 1)  # counted, so it closes
    assert charged_unpriced(caplog) == [0]
    await billing.assert_consistent(alice)


async def test_an_implausible_lease_debit_is_dead_lettered(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    bad = usage_event(alice, lease_id=lease.lease_id).to_fields() | {
        "lease_debit_micros": str(INT64_MAX + 1)  # no lease (a bigint) holds that much
    }
    await billing.redis.xadd(billing.settings.usage_stream, bad)
    await billing.publish(usage_event(alice, lease_id=lease.lease_id))
    await billing.wait_applied(alice, 1)

    [(_, dead)] = await billing.redis.xrange(billing.settings.dead_letter_stream)
    assert dead[b"dead_letter_reason"] == (
        b"invalid usage event: lease_debit_micros is implausibly large"
    )
    assert (await lease_row(billing, lease.lease_id))["events"] == 1
    await billing.assert_consistent(alice)


# -- closing ---------------------------------------------------------------------------------


async def test_closing_after_its_events_are_applied_returns_the_rest_at_once(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    for _ in range(2):
        await billing.publish(usage_event(alice, lease_id=lease.lease_id))
    await billing.wait_applied(alice, 2)

    closed = await close_lease(billing, alice, lease.lease_id, 2)

    total = 100 * WORST_CASE_MICROS - 2 * USAGE_MICROS
    assert closed.balance_micros == total
    row = await lease_row(billing, lease.lease_id)
    assert (row["status"], row["expected_events"]) == ("returned", 2)
    assert row["returned_at"] is not None
    returned = await billing.ledger_row(f"lease-return:{lease.lease_id}")
    assert (returned["kind"], returned["amount_micros"], returned["hold_micros"]) == (
        "lease_return",
        0,
        lease.amount_micros - 2 * USAGE_MICROS,
    )
    assert returned["lease_id"] == lease.lease_id
    assert await available(billing, alice) == total
    balance = await billing.balance(alice)
    assert (balance.balance_micros, balance.held_micros) == (total, 0)
    await billing.assert_consistent(alice)

    # Closing again changes nothing and answers the balance.
    assert (await close_lease(billing, alice, lease.lease_id, 5)).balance_micros == total
    assert (await lease_row(billing, lease.lease_id))["expected_events"] == 2
    await billing.assert_consistent(alice)


async def test_closing_before_its_events_returns_the_rest_when_the_last_is_applied(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)

    closed = await close_lease(billing, alice, lease.lease_id, 2)

    assert closed.balance_micros == lease.balance_micros
    row = await lease_row(billing, lease.lease_id)
    assert (row["status"], row["expected_events"], row["returned_at"]) == ("closing", 2, None)
    assert (await billing.balance(alice)).balance_micros == 100 * WORST_CASE_MICROS
    assert (await close_lease(billing, alice, lease.lease_id, 7)).balance_micros == (
        lease.balance_micros
    )
    await billing.assert_consistent(alice)

    await billing.publish(usage_event(alice, lease_id=lease.lease_id))
    await billing.wait_applied(alice, 1)
    assert (await lease_row(billing, lease.lease_id))["status"] == "closing"
    await billing.assert_consistent(alice)

    # The last expected event, then a third the holder did not count: the lease is returned
    # in the second's transaction, and the third is charged to the balance.
    second = usage_event(alice, lease_id=lease.lease_id)
    third = usage_event(alice, lease_id=lease.lease_id)
    await billing.publish(second)
    await billing.publish(third)
    await billing.wait_applied(alice, 3)

    row = await lease_row(billing, lease.lease_id)
    assert (row["status"], row["events"], row["spent_micros"]) == ("returned", 2, 2 * USAGE_MICROS)
    returned = await billing.ledger_row(f"lease-return:{lease.lease_id}")
    assert returned["hold_micros"] == lease.amount_micros - 2 * USAGE_MICROS
    assert (await billing.ledger_row(second.event_id))["lease_id"] == lease.lease_id
    late = await billing.ledger_row(third.event_id)
    assert (late["lease_id"], late["hold_micros"], late["amount_micros"]) == (
        None,
        0,
        -USAGE_MICROS,
    )
    assert await available(billing, alice) == 100 * WORST_CASE_MICROS - 3 * USAGE_MICROS
    await billing.assert_consistent(alice)


async def test_another_users_lease_cannot_be_closed_and_is_not_told_apart(
    billing: Billing,
) -> None:
    alice, bob = user(), user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    await billing.grant(bob, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)

    nobodys_id = "lease_" + uuid.uuid4().hex
    theirs = await refused(close_lease(billing, bob, lease.lease_id, 0))
    nobodys = await refused(close_lease(billing, bob, nobodys_id, 0))

    # The same answer as for a lease that does not exist: nothing said of alice's.
    assert theirs.code == nobodys.code == grpc.StatusCode.NOT_FOUND
    assert theirs.param == nobodys.param == "lease_id"
    assert theirs.message == f"there is no lease {lease.lease_id!r} for this user"
    assert nobodys.message == f"there is no lease {nobodys_id!r} for this user"
    row = await lease_row(billing, lease.lease_id)
    assert (row["status"], row["expected_events"]) == ("open", None)
    assert await available(billing, bob) == 100 * WORST_CASE_MICROS
    await billing.assert_consistent(alice)


# -- expiry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"lease_use_s": 0.2, "hold_ttl_s": 2}])
async def test_the_sweeper_returns_leases_never_closed_or_never_completed(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    expired_before = REGISTRY.get_sample_value("billing_leases_expired_total") or 0.0
    abandoned = await open_lease(billing, alice)  # its holder died
    waiting = await open_lease(billing, alice)  # closed for an event that never came
    await billing.publish(usage_event(alice, lease_id=abandoned.lease_id))
    await billing.wait_applied(alice, 1)
    await close_lease(billing, alice, waiting.lease_id, 1)

    first = await wait_lease_status(billing, abandoned.lease_id, "expired")
    second = await wait_lease_status(billing, waiting.lease_id, "expired")

    assert first["returned_at"] is not None and second["returned_at"] is not None
    returned = await billing.ledger_row(f"lease-return:{abandoned.lease_id}")
    assert (returned["kind"], returned["hold_micros"]) == (
        "lease_return",
        abandoned.amount_micros - USAGE_MICROS,
    )
    assert (await billing.ledger_row(f"lease-return:{waiting.lease_id}"))["hold_micros"] == (
        waiting.amount_micros
    )
    total = 100 * WORST_CASE_MICROS - USAGE_MICROS
    assert await available(billing, alice) == total
    assert (await billing.balance(alice)).balance_micros == total
    expired_after = REGISTRY.get_sample_value("billing_leases_expired_total") or 0.0
    assert expired_after - expired_before == 2
    await billing.assert_consistent(alice)

    # An event of an expired lease applied late is charged to the balance, like an expired hold's.
    late = usage_event(alice, lease_id=abandoned.lease_id)
    await billing.publish(late)
    await billing.wait_applied(alice, 2)
    assert (await billing.ledger_row(late.event_id))["hold_micros"] == 0
    assert await available(billing, alice) == total - USAGE_MICROS
    assert (await close_lease(billing, alice, abandoned.lease_id, 1)).balance_micros == (
        total - USAGE_MICROS
    )
    await billing.assert_consistent(alice)


# -- balance and concurrency -----------------------------------------------------------------


async def test_get_balance_counts_lease_credits_and_holds_apart(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    lease = await open_lease(billing, alice)
    await billing.reserve(alice, "req-1")
    await billing.publish(usage_event(alice, lease_id=lease.lease_id))
    await billing.wait_applied(alice, 1)

    balance = await billing.balance(alice)

    # available (100 - 16 - 1 worst cases) + the lease's unspent part; the hold apart.
    assert balance.held_micros == WORST_CASE_MICROS
    assert balance.balance_micros == (
        83 * WORST_CASE_MICROS + 16 * WORST_CASE_MICROS - USAGE_MICROS
    )
    await billing.assert_consistent(alice)


async def test_a_lease_waiting_on_a_concurrent_debit_is_sized_from_the_balance_after_it(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, 100 * WORST_CASE_MICROS)
    async with billing.pool.acquire() as conn:
        debit = conn.transaction()
        await debit.start()
        # A charge of 60 worst cases, committed after OpenLease's statement started.
        await conn.execute(
            "UPDATE billing.accounts SET available_micros = available_micros - $2"
            " WHERE user_id = $1",
            alice,
            60 * WORST_CASE_MICROS,
        )
        await conn.execute(
            "INSERT INTO billing.ledger (event_id, kind, user_id, amount_micros, cost_micros)"
            " VALUES ('req-elsewhere', 'charge', $1, $2, $3)",
            alice,
            -60 * WORST_CASE_MICROS,
            60 * WORST_CASE_MICROS,
        )
        opening = asyncio.create_task(open_lease(billing, alice))

        async def waiting_on_the_account() -> bool:
            waiting: int = await billing.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%billing.leases%'"
            )
            return waiting == 1

        await wait_for(waiting_on_the_account, 10, "OpenLease to wait on the account row")
        await debit.commit()
    lease = await opening

    # A quarter of the 40 left, not of the 100 its snapshot saw.
    assert lease.amount_micros == 10 * WORST_CASE_MICROS
    assert lease.balance_micros == 30 * WORST_CASE_MICROS
    await billing.assert_consistent(alice)


async def test_concurrent_leases_and_holds_never_exceed_the_balance(billing: Billing) -> None:
    alice = user()
    granted = 40 * WORST_CASE_MICROS
    await billing.grant(alice, granted)

    calls = []
    for i in range(30):
        calls.append(open_lease(billing, alice, holder=f"process-{i}"))
        calls.append(billing.reserve(alice, f"req-{i}"))
    results = await asyncio.gather(*calls, return_exceptions=True)

    leases = [r for r in results if isinstance(r, billing_pb2.Lease) and r.lease_id]
    holds = [r for r in results if isinstance(r, billing_pb2.ReserveResponse)]
    refusals = [from_rpc_error(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert not [
        r
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, grpc.aio.AioRpcError)
    ]
    assert all(err.reason == INSUFFICIENT_CREDITS for err in refusals)
    assert leases and holds
    assert all(lease.amount_micros >= WORST_CASE_MICROS for lease in leases)
    set_aside = sum(lease.amount_micros for lease in leases) + sum(h.amount_micros for h in holds)
    left = await available(billing, alice)
    assert left >= 0 and set_aside + left == granted
    db_leased = await billing.pool.fetchval(
        "SELECT sum(amount_micros) FROM billing.leases WHERE user_id = $1", alice
    )
    assert db_leased == sum(lease.amount_micros for lease in leases)
    await billing.assert_consistent(alice)

    # Every lease and hold spent once and closed: the balance is the grant less the usage.
    events = [usage_event(alice, lease_id=lease.lease_id) for lease in leases]
    events += [usage_event(alice, event_id=h.hold_id, hold_id=h.hold_id) for h in holds]
    await asyncio.gather(*(billing.publish(e) for e in events))
    await asyncio.gather(*(close_lease(billing, alice, lease.lease_id, 1) for lease in leases))
    await billing.wait_applied(alice, len(events))

    async def all_returned() -> bool:
        live: int = await billing.pool.fetchval(
            "SELECT count(*) FROM billing.leases WHERE user_id = $1 AND status <> 'returned'",
            alice,
        )
        return live == 0

    await wait_for(all_returned, 15, "every lease returned")
    assert await available(billing, alice) == granted - len(events) * USAGE_MICROS
    balance = await billing.balance(alice)
    assert (balance.balance_micros, balance.held_micros) == (
        granted - len(events) * USAGE_MICROS,
        0,
    )
    await billing.assert_consistent(alice)
