"""Reserve, Release, GetBalance, Grant over real gRPC and Postgres: holds never overspend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from billing_test_support import SECRET, Billing, usage_event, wait_for

from grpc_stubs.billing.v1 import billing_pb2
from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.errors import INSUFFICIENT_CREDITS, from_rpc_error

# gpt-4o-mini: 0.15 credits per 1M input tokens, 0.60 per 1M output tokens.
WORST_CASE_MICROS = 150 + 600  # 1,000 input + 1,000 output tokens
USAGE_MICROS = 15 + 120  # 100 input + 200 output tokens


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_concurrent_reserves_never_spend_more_than_the_balance(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 10 * WORST_CASE_MICROS)

    results = await asyncio.gather(
        *(billing.reserve(alice, f"req-{i}") for i in range(50)), return_exceptions=True
    )

    held = [r for r in results if isinstance(r, billing_pb2.ReserveResponse)]
    refused = [from_rpc_error(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(held) == 10 and len(refused) == 40
    for err in refused:
        assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.reason == INSUFFICIENT_CREDITS
        assert "balance is 0 credits" in err.message and "0.00075 credits" in err.message
    balance = await billing.balance(alice)
    assert balance.balance_micros == 0
    assert balance.held_micros == 10 * WORST_CASE_MICROS

    for hold in held:
        await billing.publish(usage_event(alice, event_id=hold.hold_id, hold_id=hold.hold_id))
    await billing.wait_applied(alice, 10)

    balance = await billing.balance(alice)
    assert balance.held_micros == 0
    assert balance.balance_micros == 10 * WORST_CASE_MICROS - 10 * USAGE_MICROS
    grants = await billing.pool.fetchval(
        "SELECT sum(amount_micros) FROM billing.ledger WHERE user_id = $1 AND kind = 'grant'", alice
    )
    charges = await billing.pool.fetchval(
        "SELECT sum(-amount_micros) FROM billing.ledger WHERE user_id = $1 AND kind = 'charge'",
        alice,
    )
    assert balance.balance_micros == grants - charges
    await billing.assert_consistent(alice)


async def test_reserve_is_idempotent_per_request_id(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 5 * WORST_CASE_MICROS)

    first = await billing.reserve(alice, "req-1")
    again = await billing.reserve(alice, "req-1")
    together = await asyncio.gather(*(billing.reserve(alice, "req-2") for _ in range(5)))

    assert again == first
    assert first.hold_id == "req-1" and first.amount_micros == WORST_CASE_MICROS
    assert {r.hold_id for r in together} == {"req-2"}
    holds = await billing.pool.fetchval(
        "SELECT count(*) FROM billing.holds WHERE user_id = $1", alice
    )
    assert holds == 2
    balance = await billing.balance(alice)
    assert balance.balance_micros == 3 * WORST_CASE_MICROS
    assert balance.held_micros == 2 * WORST_CASE_MICROS


async def test_a_repeated_reserve_returns_the_hold_even_when_the_balance_is_now_short(
    billing: Billing,
) -> None:
    alice = user()
    await billing.grant(alice, WORST_CASE_MICROS)
    first = await billing.reserve(alice, "req-1")
    assert first.balance_micros == 0
    assert await billing.reserve(alice, "req-1") == first


async def test_another_users_request_id_is_refused(billing: Billing) -> None:
    alice, bob = user(), user()
    await billing.grant(alice, WORST_CASE_MICROS)
    await billing.grant(bob, WORST_CASE_MICROS)
    await billing.reserve(alice, "shared-id")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.reserve(bob, "shared-id")
    # One refusal for every reuse that is not a retry of the same call (issue 7).
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await billing.balance(bob)).balance_micros == WORST_CASE_MICROS


async def assert_refused_and_unchanged(
    billing: Billing, user_id: str, hold_id: str, **call: Any
) -> None:
    before = await billing.balance(user_id)
    holds = await billing.pool.fetch(
        "SELECT hold_id, status, amount_micros FROM billing.holds ORDER BY hold_id"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.reserve(user_id, hold_id, **call)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "mint a new request_id" in (err.value.details() or "")
    assert await billing.balance(user_id) == before
    assert (
        await billing.pool.fetch(
            "SELECT hold_id, status, amount_micros FROM billing.holds ORDER BY hold_id"
        )
        == holds
    )
    await billing.assert_consistent(user_id)


async def test_a_settled_hold_is_never_handed_back(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 5 * WORST_CASE_MICROS)
    hold = await billing.reserve(alice, "req-1")
    await billing.publish(usage_event(alice, event_id=hold.hold_id, hold_id=hold.hold_id))
    await billing.wait_applied(alice, 1)

    # Before issue 7 this returned the settled hold, and the request ran without one.
    await assert_refused_and_unchanged(billing, alice, "req-1")


async def test_a_released_hold_is_never_handed_back(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 5 * WORST_CASE_MICROS)
    hold = await billing.reserve(alice, "req-1")
    await billing.stub.Release(
        billing_pb2.ReleaseRequest(hold_id=hold.hold_id),
        metadata=billing.as_user(alice),
        timeout=10,
    )
    await assert_refused_and_unchanged(billing, alice, "req-1")


async def test_an_open_hold_of_another_call_is_never_handed_back(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 50 * WORST_CASE_MICROS)
    first = await billing.reserve(alice, "req-1")
    await assert_refused_and_unchanged(billing, alice, "req-1", output_tokens=50_000)
    await assert_refused_and_unchanged(billing, alice, "req-1", model="gpt-4o")
    await assert_refused_and_unchanged(
        billing, alice, "req-1", backend_type=common_pb2.BACKEND_TYPE_MULTIMODAL
    )
    # A plain retry of the identical call still gets its hold back.
    assert await billing.reserve(alice, "req-1") == first


async def test_an_id_that_already_names_usage_is_refused(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 5 * WORST_CASE_MICROS)
    # A BYOK request's usage (no hold): a hold with its id would never be settled, since the
    # hold's own usage event would be dropped as a duplicate.
    await billing.publish(usage_event(alice, event_id="used-1", mode="byok"))
    await billing.wait_applied(alice, 1)
    await assert_refused_and_unchanged(billing, alice, "used-1")


async def test_the_hold_covers_the_costliest_route(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    # gpt-4o: 2.50 credits per 1M input tokens, 10.00 per 1M output tokens.
    gpt_4o = 2_500 + 10_000
    hold = await billing.stub.Reserve(
        billing_pb2.ReserveRequest(
            request_id="req-1",
            backend_type=common_pb2.BACKEND_TYPE_TEXT,
            provider="openai",
            model="gpt-4o-mini",
            worst_case=common_pb2.Usage(input_tokens=1_000, output_tokens=1_000),
            alternatives=[billing_pb2.Route(provider="openai", model="gpt-4o")],
        ),
        metadata=billing.as_user(alice),
        timeout=10,
    )
    assert hold.amount_micros == gpt_4o
    assert (await billing.balance(alice)).held_micros == gpt_4o


async def test_a_route_without_a_price_refuses_the_hold(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.stub.Reserve(
            billing_pb2.ReserveRequest(
                request_id="req-1",
                backend_type=common_pb2.BACKEND_TYPE_TEXT,
                provider="openai",
                model="gpt-4o-mini",
                worst_case=common_pb2.Usage(input_tokens=1_000, output_tokens=1_000),
                alternatives=[billing_pb2.Route(provider="openai", model="gpt-unpriced")],
            ),
            metadata=billing.as_user(alice),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == (
        "no price for openai/gpt-unpriced; member mode is not available for it, so it cannot be"
        " the fallback of a member request: choose a priced fallback model or none"
    )
    assert await billing.balance(alice) == billing_pb2.Balance(balance_micros=1_000_000)


async def test_a_model_without_a_price_is_not_available_in_member_mode(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.reserve(alice, "req-1", provider="ollama", model="llama3.2:latest")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == (
        "no price for ollama/llama3.2:latest; member mode is not available for it"
    )


async def test_image_holds_are_priced_by_size_and_quality(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)

    def image(size: str, quality: str, n: int = 1) -> dict[str, object]:
        return {
            "backend_type": common_pb2.BACKEND_TYPE_IMAGE,
            "input_tokens": 0,
            "output_tokens": 0,
            "images": n,
            "image_size": size,
            "image_quality": quality,
        }

    hd = await billing.reserve(alice, "img-1", model="dall-e-3", **image("1024x1792", "hd", 2))
    standard = await billing.reserve(
        alice, "img-2", model="dall-e-3", **image("1024x1024", "standard")
    )
    dalle2 = await billing.reserve(alice, "img-3", model="dall-e-2", **image("512x512", ""))
    flat = await billing.reserve(
        alice, "img-4", provider="stability", model="stable-image-core", **image("16:9", "")
    )
    assert (hd.amount_micros, standard.amount_micros) == (240_000, 40_000)
    assert (dalle2.amount_micros, flat.amount_micros) == (18_000, 30_000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.reserve(alice, "img-5", model="dall-e-3", **image("64x64", "hd"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'64x64'" in (err.value.details() or "")


async def test_an_operator_price_change_applies_to_the_next_reserve(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 1_000_000)
    await billing.pool.execute(
        "UPDATE billing.prices SET price_micros = 1000000, updated_at = now()"
        " WHERE provider = 'openai' AND model = 'gpt-4o-mini' AND unit = 'output_token'"
    )
    hold = await billing.reserve(alice, "req-1", input_tokens=0, output_tokens=1_001)
    assert hold.amount_micros == 1_001


async def test_release_returns_an_open_hold_of_the_callers_own(billing: Billing) -> None:
    alice, mallory = user(), user()
    await billing.grant(alice, 2 * WORST_CASE_MICROS)
    hold = await billing.reserve(alice, "req-1")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.stub.Release(
            billing_pb2.ReleaseRequest(hold_id=hold.hold_id),
            metadata=billing.as_user(mallory),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    released = await billing.stub.Release(
        billing_pb2.ReleaseRequest(hold_id=hold.hold_id),
        metadata=billing.as_user(alice),
        timeout=10,
    )
    again = await billing.stub.Release(
        billing_pb2.ReleaseRequest(hold_id=hold.hold_id),
        metadata=billing.as_user(alice),
        timeout=10,
    )
    assert released.balance_micros == again.balance_micros == 2 * WORST_CASE_MICROS
    assert (await billing.balance(alice)).held_micros == 0
    await billing.assert_consistent(alice)


async def test_user_calls_need_a_user(billing: Billing) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.stub.GetBalance(
            billing_pb2.GetBalanceRequest(),
            metadata=outgoing_metadata(billing.text_svc_token),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_grant_is_for_operators_only_and_idempotent_per_grant_id(billing: Billing) -> None:
    alice = user()
    request = billing_pb2.GrantRequest(
        user_id=alice, amount_micros=5_000_000, grant_id="promo-1", reason="promotion"
    )
    for service in ("text-svc", "gateway"):
        token = mint_service_token(SECRET, service)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await billing.stub.Grant(
                request, metadata=outgoing_metadata(token, user_id=alice), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    operator = outgoing_metadata(billing.operator_token)
    first = await billing.stub.Grant(request, metadata=operator, timeout=10)
    again = await billing.stub.Grant(request, metadata=operator, timeout=10)
    assert first.balance_micros == again.balance_micros == 5_000_000

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await billing.stub.Grant(
            billing_pb2.GrantRequest(user_id=alice, amount_micros=1, grant_id="promo-1"),
            metadata=operator,
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rows = await billing.pool.fetch(
        "SELECT event_id, amount_micros, reason FROM billing.ledger WHERE user_id = $1", alice
    )
    assert [tuple(r) for r in rows] == [("grant:promo-1", 5_000_000, "promotion")]


@pytest.mark.parametrize("settings_overrides", [{"starting_balance_micros": 10_000_000}])
async def test_a_new_account_gets_the_starting_balance_once(billing: Billing) -> None:
    alice, bob = user(), user()
    balances = await asyncio.gather(*(billing.balance(alice) for _ in range(5)))
    assert {b.balance_micros for b in balances} == {10_000_000}

    hold = await billing.reserve(bob, "req-1")  # the first call of a user may be a Reserve
    assert hold.balance_micros == 10_000_000 - WORST_CASE_MICROS
    welcome = await billing.pool.fetch(
        "SELECT user_id FROM billing.ledger WHERE event_id LIKE 'grant:welcome:%' ORDER BY user_id"
    )
    assert sorted(r["user_id"] for r in welcome) == sorted([alice, bob])
    await billing.assert_consistent(alice)
    await billing.assert_consistent(bob)


@pytest.mark.parametrize("settings_overrides", [{"starting_balance_micros": 10_000_000}])
async def test_concurrent_first_reserves_of_a_new_user_all_get_their_hold(
    billing: Billing,
) -> None:
    alice = user()
    holds = await asyncio.gather(*(billing.reserve(alice, f"req-{i}") for i in range(8)))

    assert sorted(h.hold_id for h in holds) == sorted(f"req-{i}" for i in range(8))
    balance = await billing.balance(alice)
    assert balance.balance_micros == 10_000_000 - 8 * WORST_CASE_MICROS
    assert balance.held_micros == 8 * WORST_CASE_MICROS
    await billing.assert_consistent(alice)


async def test_the_database_refuses_a_negative_balance_and_ledger_edits(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, 100, grant_id="g-1")
    with pytest.raises(asyncpg.CheckViolationError):
        await billing.pool.execute(
            "UPDATE billing.accounts SET available_micros = available_micros - 101"
            " WHERE user_id = $1",
            alice,
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await billing.pool.execute(
            "UPDATE billing.ledger SET amount_micros = 1000000 WHERE event_id = 'grant:g-1'"
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await billing.pool.execute("DELETE FROM billing.ledger WHERE event_id = 'grant:g-1'")
    assert (await billing.balance(alice)).balance_micros == 100


@pytest.mark.parametrize("settings_overrides", [{"hold_ttl_s": 1}])
async def test_an_expired_hold_returns_its_credits(billing: Billing) -> None:
    alice = user()
    await billing.grant(alice, WORST_CASE_MICROS)
    hold = await billing.reserve(alice, "req-1")
    assert (await billing.balance(alice)).held_micros == WORST_CASE_MICROS

    async def returned() -> bool:
        balance = await billing.balance(alice)
        return balance.held_micros == 0 and balance.balance_micros == WORST_CASE_MICROS

    await wait_for(returned, 10, "the sweeper to expire the hold")
    status = await billing.pool.fetchval(
        "SELECT status FROM billing.holds WHERE hold_id = $1", hold.hold_id
    )
    expiry = await billing.pool.fetchrow(
        "SELECT kind, amount_micros, hold_micros FROM billing.ledger WHERE event_id = $1",
        f"expiry:{hold.hold_id}",
    )
    assert status == "expired"
    assert tuple(expiry) == ("expiry", 0, WORST_CASE_MICROS)
    await billing.assert_consistent(alice)


def test_the_grant_command_credits_a_user_and_prints_the_balance(database_url: str) -> None:
    env = {
        **os.environ,
        "BILLING_SVC_DATABASE_URL": database_url,
        "BILLING_SVC_LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "billing_svc",
        "grant",
        "carol",
        "2500000",
        "--grant-id",
        "g-1",
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert first.stdout == again.stdout == "carol: balance 2500000 micro-credits (2.5 credits)\n"
