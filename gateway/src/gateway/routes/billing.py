"""The caller's credits and usage, from billing-svc. Money is integer micro-credits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from gateway import schemas
from gateway.deps import BillingClient, CurrentUser, RequestId
from gateway.errors import invalid
from grpc_stubs.billing.v1 import billing_pb2
from grpc_stubs.common.v1 import common_pb2
from svc_common.names import BACKEND_TYPE_ENUMS, BACKEND_TYPE_NAMES, BACKEND_TYPES, MODE_NAMES

balance_router = APIRouter(prefix="/api/billing", tags=["billing"])
usage_router = APIRouter(prefix="/api/usage", tags=["billing"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorResponse} for status in (400, 401, 503)
}


def credits(micros: int) -> str:
    """Micro-credits as a decimal string of credits: 4250000 -> "4.250000"."""
    return f"{Decimal(micros).scaleb(-6):.6f}"


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@balance_router.get(
    "/balance",
    summary="Your available credits and the credits held for requests in flight",
    response_model=None,
    responses={200: {"model": schemas.Balance}, **_ERRORS},
)
async def get_balance(user: CurrentUser, request_id: RequestId, billing: BillingClient) -> Response:
    balance = await billing.get_balance(user, request_id)
    return _json(
        {
            "balance_micros": balance.balance_micros,
            "held_micros": balance.held_micros,
            "balance": credits(balance.balance_micros),
        }
    )


# The times billing-svc can take: unix seconds from 1970 up to the end of year 9999 (the end
# of Python's and the console's calendars; billing-svc turns them into timestamps).
LATEST_UNIX = 253_402_300_799  # 9999-12-31T23:59:59Z
_UNIX_SECONDS = re.compile(r"[0-9]{1,20}")


def parse_time(value: str | None, param: str) -> int:
    """Unix seconds from unix seconds or ISO-8601 (a time without a zone is UTC); 0 when absent."""
    if value is None or value == "":
        return 0
    out_of_range = invalid(
        f"'{param}' is out of range: use a time between 1970-01-01T00:00:00Z and "
        "9999-12-31T23:59:59Z",
        param=param,
    )
    if _UNIX_SECONDS.fullmatch(value):
        seconds = int(value)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise invalid(
                f"invalid value for '{param}': use ISO-8601 (2025-01-31T00:00:00Z) or unix seconds",
                param=param,
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            seconds = int(moment.timestamp())
        except (OverflowError, ValueError):
            raise out_of_range from None
    if not 0 <= seconds <= LATEST_UNIX:
        raise out_of_range
    return seconds


@usage_router.get(
    "",
    summary="Your usage per backend type, provider and model",
    response_model=None,
    responses={200: {"model": schemas.Usage}, **_ERRORS},
)
async def get_usage(
    user: CurrentUser,
    request_id: RequestId,
    billing: BillingClient,
    backend_type: Annotated[schemas.BackendTypeName | None, Query()] = None,
    from_: Annotated[
        str | None, Query(alias="from", description="ISO-8601 or unix seconds")
    ] = None,
    to: Annotated[str | None, Query(description="ISO-8601 or unix seconds")] = None,
) -> Response:
    start, end = parse_time(from_, "from"), parse_time(to, "to")
    if start and end and start > end:
        raise invalid("'from' is after 'to'", param="from")
    request = billing_pb2.ListUsageRequest(
        backend_type=BACKEND_TYPE_ENUMS[backend_type]
        if backend_type
        else common_pb2.BACKEND_TYPE_UNSPECIFIED,
        from_unix=start,
        to_unix=end,
    )
    response = await billing.list_usage(request, user, request_id)
    fields = ("requests", "input_tokens", "output_tokens", "images", "cost_micros")
    by_type = {
        name: dict.fromkeys(fields, 0)
        for name in BACKEND_TYPES
        if backend_type is None or name == backend_type
    }
    totals = []
    for row in response.totals:
        name = BACKEND_TYPE_NAMES.get(row.backend_type)
        if name is None:
            continue
        entry = {
            "backend_type": name,
            "provider": row.provider,
            "model": row.model,
            "mode": MODE_NAMES.get(row.mode),
        }
        for field in fields:
            entry[field] = getattr(row, field)
            by_type.setdefault(name, dict.fromkeys(fields, 0))[field] += getattr(row, field)
        totals.append(entry)
    return _json({"totals": totals, "by_backend_type": by_type})
