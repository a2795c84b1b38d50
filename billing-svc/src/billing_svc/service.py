"""billing.v1.BillingService: holds, credit leases, balances, usage totals and operator grants."""

from __future__ import annotations

import asyncpg
import grpc

from billing_svc import accounts, leases
from billing_svc.consumer import MAX_UNITS
from billing_svc.environment import Settings
from billing_svc.prices import PriceBook, PriceTable, Units, UnknownPrice
from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import Caller, caller
from svc_common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from svc_common.names import BACKEND_TYPE_ENUMS, BACKEND_TYPE_NAMES, MODE_ENUMS

# A request's primary route plus its fallbacks; text-svc sends at most one fallback.
MAX_ALTERNATIVE_ROUTES = 4

# Bounds of well-typed input that Postgres would otherwise refuse mid-call (an INTERNAL for the
# caller): text columns take no NUL, a btree key no more than ~2.7 kB, bigint no more than
# 2**63 - 1, timestamptz nothing past the year 294276. Checked before anything is written.
MAX_ID_CHARS = 256  # user ids (as settings-svc), request/hold ids, grant ids
MAX_NAME_CHARS = 256  # provider, model, image size and quality
MAX_REASON_CHARS = 1024
MAX_MICROS = 2**63 - 1  # billing.* amounts are bigint
# 9999-12-31T23:59:59Z: as far as any date type (Python's datetime included) goes.
MAX_UNIX = 253_402_300_799


def _text(value: str, param: str, max_chars: int, *, required: bool = True) -> str:
    """A string field fit to store: present (if required), bounded and printable (no NUL,
    control or surrogate characters). The message never quotes the value."""
    if not value:
        if required:
            raise InvalidArgument(f"{param} is required", param=param)
        return value
    if len(value) > max_chars or not value.isprintable():
        raise InvalidArgument(
            f"{param} must be at most {max_chars} printable characters", param=param
        )
    return value


def _user(who: Caller) -> str:
    return _text(who.require_user(), "x-user-id", MAX_ID_CHARS)


def _backend_type(value: common_pb2.BackendType.ValueType) -> str:
    backend_type = BACKEND_TYPE_NAMES.get(value)
    if backend_type is None:
        raise InvalidArgument("backend_type is required", param="backend_type")
    return backend_type


def _worst_case(worst: common_pb2.Usage) -> Units:
    if min(worst.input_tokens, worst.output_tokens, worst.images) < 0:
        raise InvalidArgument("worst_case units must not be negative", param="worst_case")
    # The consumer refuses usage this large, so no hold or lease can be for it either.
    if max(worst.input_tokens, worst.output_tokens, worst.images) >= MAX_UNITS:
        raise InvalidArgument(
            f"worst_case units must each be below {MAX_UNITS}: ask for fewer tokens or images",
            param="worst_case",
        )
    _text(worst.image_size, "worst_case.image_size", MAX_NAME_CHARS, required=False)
    _text(worst.image_quality, "worst_case.image_quality", MAX_NAME_CHARS, required=False)
    return Units(
        input_tokens=worst.input_tokens,
        output_tokens=worst.output_tokens,
        images=worst.images,
        image_size=worst.image_size,
        image_quality=worst.image_quality,
    )


def _route(route: billing_pb2.Route, param: str) -> tuple[str, str]:
    _text(route.provider, f"{param}.provider", MAX_NAME_CHARS)
    _text(route.model, f"{param}.model", MAX_NAME_CHARS)
    return route.provider, route.model


def _worst_cost(prices: PriceTable, routes: list[tuple[str, str]], worst: Units) -> int:
    """What `worst` costs on the dearest of `routes` (the request may end on any of them)."""
    try:
        amount = prices.costliest(routes, worst)
    except UnknownPrice as exc:
        raise FailedPrecondition(str(exc), param="model") from None
    if amount > MAX_MICROS:
        # Prices are operator data without an upper bound: units below MAX_UNITS can still
        # cost more than a bigint holds. No balance could cover it; say so before the database.
        raise InvalidArgument(
            "worst_case costs more than any balance can hold: ask for fewer tokens or images",
            param="worst_case",
        )
    return amount


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, settings: Settings, pool: asyncpg.Pool, prices: PriceBook) -> None:
        self._settings = settings
        self._pool = pool
        self._prices = prices

    async def Reserve(
        self, request: billing_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReserveResponse:
        user_id = _user(caller(context))
        if not request.request_id:
            raise InvalidArgument(
                "request_id is required (the hold id, minted for this request)", param="request_id"
            )
        _text(request.request_id, "request_id", MAX_ID_CHARS)
        backend_type = _backend_type(request.backend_type)
        if not request.provider or not request.model:
            raise InvalidArgument("provider and model are required", param="model")
        _text(request.provider, "provider", MAX_NAME_CHARS)
        _text(request.model, "model", MAX_NAME_CHARS)
        worst = _worst_case(request.worst_case)
        if len(request.alternatives) > MAX_ALTERNATIVE_ROUTES:
            raise InvalidArgument(
                f"at most {MAX_ALTERNATIVE_ROUTES} alternative routes are allowed",
                param="alternatives",
            )
        routes = [(request.provider, request.model)]
        for alternative in request.alternatives:
            if not alternative.provider or not alternative.model:
                raise InvalidArgument(
                    "every alternative route needs a provider and a model", param="alternatives"
                )
            routes.append(_route(alternative, "alternatives"))
        prices = await self._prices.current(self._pool)
        amount = _worst_cost(prices, routes, worst)
        hold = await accounts.reserve(
            self._pool,
            user_id=user_id,
            request_id=request.request_id,
            backend_type=backend_type,
            provider=request.provider,
            model=request.model,
            amount_micros=amount,
            ttl_s=self._settings.hold_ttl_s,
            starting_balance_micros=self._settings.starting_balance_micros,
        )
        return billing_pb2.ReserveResponse(
            hold_id=hold.hold_id,
            amount_micros=hold.amount_micros,
            balance_micros=hold.balance_micros,
            expires_at=hold.expires_at,
        )

    async def OpenLease(
        self, request: billing_pb2.OpenLeaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Lease:
        who = caller(context)
        user_id = _user(who)
        backend_type = _backend_type(request.backend_type)
        if not request.routes:
            raise InvalidArgument(
                "routes are required: the primary route first, then its fallbacks", param="routes"
            )
        if len(request.routes) > 1 + MAX_ALTERNATIVE_ROUTES:
            raise InvalidArgument(
                f"at most {1 + MAX_ALTERNATIVE_ROUTES} routes are allowed (the primary and"
                f" {MAX_ALTERNATIVE_ROUTES} fallbacks)",
                param="routes",
            )
        routes = []
        for route in request.routes:
            if not route.provider or not route.model:
                raise InvalidArgument("every route needs a provider and a model", param="routes")
            routes.append(_route(route, "routes"))
        worst = _worst_case(request.worst_case)
        holder = _text(request.holder, "holder", MAX_NAME_CHARS, required=False) or who.service
        prices = await self._prices.current(self._pool)
        # One request's worst case on the dearest route: the lease is sized in such requests.
        unit = _worst_cost(prices, routes, worst)
        settings = self._settings
        lease = await leases.open_lease(
            self._pool,
            user_id=user_id,
            backend_type=backend_type,
            holder=holder,
            primary_route=routes[0],
            request_micros=unit,
            max_amount_micros=min(unit * settings.lease_requests, MAX_MICROS),
            share_divisor=settings.lease_share_divisor,
            use_s=settings.lease_use_s,
            ttl_s=settings.hold_ttl_s,
            starting_balance_micros=settings.starting_balance_micros,
        )
        if not lease.lease_id:
            return billing_pb2.Lease(balance_micros=lease.balance_micros)
        return billing_pb2.Lease(
            lease_id=lease.lease_id,
            amount_micros=lease.amount_micros,
            balance_micros=lease.balance_micros,
            use_until=lease.use_until,
            expires_at=lease.expires_at,
            prices=[
                billing_pb2.UnitPrice(
                    provider=provider,
                    model=model,
                    unit=unit_name,
                    image_size=image_size,
                    image_quality=image_quality,
                    price_micros=price_micros,
                    per_units=per_units,
                )
                for (
                    provider,
                    model,
                    unit_name,
                    image_size,
                    image_quality,
                    price_micros,
                    per_units,
                ) in prices.unit_prices(routes)
            ],
        )

    async def CloseLease(
        self, request: billing_pb2.CloseLeaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CloseLeaseResponse:
        user_id = _user(caller(context))
        _text(request.lease_id, "lease_id", MAX_ID_CHARS)
        if request.requests < 0:
            raise InvalidArgument(
                "requests must not be negative: the usage events published against the lease",
                param="requests",
            )
        available = await leases.close_lease(
            self._pool, user_id=user_id, lease_id=request.lease_id, requests=request.requests
        )
        return billing_pb2.CloseLeaseResponse(balance_micros=available)

    async def Release(
        self, request: billing_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ReleaseResponse:
        user_id = _user(caller(context))
        _text(request.hold_id, "hold_id", MAX_ID_CHARS)
        available = await accounts.release(self._pool, user_id=user_id, hold_id=request.hold_id)
        return billing_pb2.ReleaseResponse(balance_micros=available)

    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Balance:
        user_id = _user(caller(context))
        available, held = await accounts.balance(
            self._pool,
            user_id=user_id,
            starting_balance_micros=self._settings.starting_balance_micros,
        )
        return billing_pb2.Balance(balance_micros=available, held_micros=held)

    async def ListUsage(
        self, request: billing_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListUsageResponse:
        user_id = _user(caller(context))
        for param, value in (("from_unix", request.from_unix), ("to_unix", request.to_unix)):
            if not 0 <= value <= MAX_UNIX:
                raise InvalidArgument(
                    f"{param} must be unix seconds from 0 to {MAX_UNIX} (9999-12-31)", param=param
                )
        totals = await accounts.list_usage(
            self._pool,
            user_id=user_id,
            backend_type=BACKEND_TYPE_NAMES.get(request.backend_type),
            from_unix=request.from_unix or None,
            to_unix=request.to_unix or None,
        )
        return billing_pb2.ListUsageResponse(
            totals=[
                billing_pb2.UsageTotal(
                    backend_type=BACKEND_TYPE_ENUMS.get(
                        t.backend_type, common_pb2.BACKEND_TYPE_UNSPECIFIED
                    ),
                    provider=t.provider,
                    model=t.model,
                    mode=MODE_ENUMS.get(t.mode, common_pb2.MODE_UNSPECIFIED),
                    requests=t.requests,
                    input_tokens=t.input_tokens,
                    output_tokens=t.output_tokens,
                    images=t.images,
                    cost_micros=t.cost_micros,
                )
                for t in totals
            ]
        )

    async def Grant(
        self, request: billing_pb2.GrantRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GrantResponse:
        who = caller(context)
        if who.service not in self._settings.grant_services:
            raise PermissionDenied(
                f"service {who.service!r} may not grant credits; only operators can"
            )
        # Emptiness is accounts.grant's to refuse (with why each is needed).
        _text(request.user_id, "user_id", MAX_ID_CHARS, required=False)
        _text(request.grant_id, "grant_id", MAX_ID_CHARS, required=False)
        _text(request.reason, "reason", MAX_REASON_CHARS, required=False)
        try:
            async with self._pool.acquire() as conn:
                available = await accounts.grant(
                    conn,
                    user_id=request.user_id,
                    amount_micros=request.amount_micros,
                    grant_id=request.grant_id,
                    reason=request.reason,
                    starting_balance_micros=self._settings.starting_balance_micros,
                )
        except asyncpg.NumericValueOutOfRangeError:
            # The grant's own transaction rolled back: neither ledger row nor balance changed.
            raise InvalidArgument(
                "amount_micros would take the balance past the largest amount it can hold",
                param="amount_micros",
            ) from None
        return billing_pb2.GrantResponse(balance_micros=available)
