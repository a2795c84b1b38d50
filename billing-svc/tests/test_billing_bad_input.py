"""Well-typed but out-of-range input is INVALID_ARGUMENT with the field to change, never INTERNAL,
and changes nothing: units whose cost overflows bigint, dates past the calendar, text Postgres
refuses (NUL), ids longer than an index key.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import grpc
import pytest
from billing_test_support import Billing

from grpc_stubs.billing.v1 import billing_pb2
from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import outgoing_metadata
from svc_common.errors import RemoteError, from_rpc_error

pytestmark = pytest.mark.timeout(60)

INT64_MAX = 2**63 - 1
# 9999-12-31T23:59:59Z, the last second ListUsage takes.
LAST_UNIX = 253_402_300_799


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def refused(call: Any) -> RemoteError:
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        return from_rpc_error(err)
    raise AssertionError(f"expected the call to fail, got {result!r}")


async def nothing_held(billing: Billing, user_id: str, balance: int) -> None:
    assert (
        await billing.pool.fetchval(
            "SELECT count(*) FROM billing.holds WHERE user_id = $1", user_id
        )
        == 0
    )
    after = await billing.balance(user_id)
    assert (after.balance_micros, after.held_micros) == (balance, 0)


@pytest.mark.parametrize(
    ("units", "param"),
    [
        # gpt-4o output at 10 credits per 1M tokens: 2**63 - 1 tokens cost ~9.2e19 micros.
        ({"output_tokens": INT64_MAX}, "worst_case"),
        ({"input_tokens": INT64_MAX, "output_tokens": INT64_MAX}, "worst_case"),
        ({"output_tokens": 10**12}, "worst_case"),
    ],
)
async def test_reserve_with_units_beyond_any_balance_is_invalid_argument(
    billing: Billing, units: dict[str, int], param: str
) -> None:
    alice = user()
    balance = await billing.grant(alice, 10**15)
    err = await refused(billing.reserve(alice, uuid.uuid4().hex, model="gpt-4o", **units))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.param == param
    assert "fewer tokens or images" in err.message
    await nothing_held(billing, alice, balance)


async def test_reserve_whose_cost_overflows_at_an_operators_price_is_invalid_argument(
    billing: Billing,
) -> None:
    # Units below the per-field bound, but an operator's price makes the product pass 2**63.
    await billing.pool.execute(
        "INSERT INTO billing.prices (provider, model, unit, price_micros, per_units)"
        " VALUES ('stability', 'priceless', 'image', $1, 1)",
        INT64_MAX,
    )
    alice = user()
    balance = await billing.grant(alice, 10**15)
    err = await refused(
        billing.reserve(
            alice,
            uuid.uuid4().hex,
            provider="stability",
            model="priceless",
            input_tokens=0,
            output_tokens=0,
            images=2,
            backend_type=common_pb2.BACKEND_TYPE_IMAGE,
        )
    )
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "worst_case")
    await nothing_held(billing, alice, balance)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"request_id": "req\x00-1"}, "request_id"),
        ({"request_id": secrets.token_hex(1500)}, "request_id"),
        ({"provider": "open\x00ai"}, "provider"),
        ({"model": "gpt-4o-mini\x00"}, "model"),
        ({"model": "gpt-4o-mini\u2028"}, "model"),
        (
            {
                "model": "dall-e-2",
                "input_tokens": 0,
                "output_tokens": 0,
                "images": 1,
                "image_size": "256x256\x00",
                "backend_type": common_pb2.BACKEND_TYPE_IMAGE,
            },
            "worst_case.image_size",
        ),
    ],
)
async def test_reserve_refuses_text_it_cannot_store(
    billing: Billing, fields: dict[str, Any], param: str
) -> None:
    alice = user()
    balance = await billing.grant(alice, 10**9)
    request_id = fields.pop("request_id", uuid.uuid4().hex)
    err = await refused(billing.reserve(alice, request_id, **fields))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, param)
    assert "\x00" not in err.message
    await nothing_held(billing, alice, balance)


async def test_a_user_id_longer_than_an_account_key_is_invalid_argument(billing: Billing) -> None:
    # Random, so Postgres cannot compress it under the btree's ~2.7 kB limit.
    long_user = secrets.token_hex(1500)
    for call in (
        lambda: billing.balance(long_user),
        lambda: billing.reserve(long_user, uuid.uuid4().hex),
        lambda: billing.list_usage(long_user),
    ):
        err = await refused(call())
        assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "x-user-id")
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.accounts") == 0


@pytest.mark.parametrize(
    ("filters", "param"),
    [
        ({"from_unix": INT64_MAX}, "from_unix"),
        ({"to_unix": INT64_MAX}, "to_unix"),
        ({"to_unix": 10**13}, "to_unix"),  # year ~318857: past Postgres's timestamps
        ({"from_unix": LAST_UNIX + 1}, "from_unix"),
        ({"from_unix": -1}, "from_unix"),
        ({"to_unix": -1}, "to_unix"),
    ],
)
async def test_list_usage_beyond_the_calendar_is_invalid_argument(
    billing: Billing, filters: dict[str, int], param: str
) -> None:
    err = await refused(billing.list_usage(user(), **filters))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, param)
    assert "9999-12-31" in err.message


async def test_list_usage_takes_the_whole_calendar(billing: Billing) -> None:
    assert await billing.list_usage(user(), from_unix=1, to_unix=LAST_UNIX) == []


@pytest.mark.parametrize("hold_id", ["hold\x00", secrets.token_hex(1500)])
async def test_release_refuses_a_hold_id_it_cannot_look_up(billing: Billing, hold_id: str) -> None:
    err = await refused(
        billing.stub.Release(
            billing_pb2.ReleaseRequest(hold_id=hold_id),
            metadata=billing.as_user(user()),
            timeout=10,
        )
    )
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "hold_id")


async def _grant(billing: Billing, **fields: Any) -> billing_pb2.GrantResponse:
    request: dict[str, Any] = {"amount_micros": 5, "grant_id": uuid.uuid4().hex, "reason": "test"}
    request.update(fields)
    response: billing_pb2.GrantResponse = await billing.stub.Grant(
        billing_pb2.GrantRequest(**request),
        metadata=outgoing_metadata(billing.operator_token),
        timeout=10,
    )
    return response


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"user_id": "bob\x00"}, "user_id"),
        ({"grant_id": "g\x00"}, "grant_id"),
        ({"reason": "welcome\x00back"}, "reason"),
        ({"grant_id": secrets.token_hex(1500)}, "grant_id"),
    ],
)
async def test_grant_refuses_text_it_cannot_store(
    billing: Billing, fields: dict[str, Any], param: str
) -> None:
    fields.setdefault("user_id", user())
    err = await refused(_grant(billing, **fields))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, param)
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.ledger") == 0


async def test_a_grant_past_the_largest_balance_is_invalid_argument_and_changes_nothing(
    billing: Billing,
) -> None:
    bob = user()
    balance = await billing.grant(bob, 10)
    ledger = await billing.pool.fetchval("SELECT count(*) FROM billing.ledger")
    err = await refused(_grant(billing, user_id=bob, amount_micros=INT64_MAX))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "amount_micros")
    assert (await billing.balance(bob)).balance_micros == balance
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.ledger") == ledger


async def test_a_request_that_is_not_utf8_is_invalid_argument(billing: Billing) -> None:
    # A lone surrogate as a non-Python client encodes it: protobuf cannot parse the request.
    request = billing_pb2.ReserveRequest(
        request_id=uuid.uuid4().hex,
        backend_type=common_pb2.BACKEND_TYPE_TEXT,
        provider="openai",
        model="gpt-4o-miniMARK",
        worst_case=common_pb2.Usage(input_tokens=10, output_tokens=10),
    ).SerializeToString()
    alice = user()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{billing.server.port}") as channel:
        reserve = channel.unary_unary(
            "/billing.v1.BillingService/Reserve",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reserve(
                request.replace(b"MARK", b"\xed\xa0\x80"),
                metadata=billing.as_user(alice),
                timeout=10,
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in (caught.value.details() or "")
    assert await billing.pool.fetchval("SELECT count(*) FROM billing.holds") == 0
