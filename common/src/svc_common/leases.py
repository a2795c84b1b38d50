"""Credit leases (billing-svc OpenLease / CloseLease): credits billing-svc set aside for this
process to spend on many of one user's member requests on one set of routes. Each request's worst
case is debited here, locally, before its provider is called, instead of a Reserve hop per
request; its usage event names the lease and billing-svc charges it against the lease.

A lease is closed (CloseLease with the number of usage events published against it) once no
request is in flight on it and it was replaced, sat idle, or reached its use-until time; what it
did not spend returns to the balance when billing-svc has applied those events. A lease this
process never closes (it died) is returned by billing-svc's sweeper after it expires.

Metrics (svc_common.metrics' registry), labelled by backend type and a fixed result only, never
a user, a lease or a key: OpenLease answers (`credit_lease_opens_total`), requests debited from
a lease or left to reserve per request (`credit_lease_debits_total`), close attempts
(`credit_lease_closes_total`), and the leases this process holds and has not closed yet
(`credit_leases_open`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from prometheus_client import Counter, Gauge

from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import Caller, forward_metadata
from svc_common.errors import from_rpc_error, reraise
from svc_common.holds import Route
from svc_common.metrics import REGISTRY
from svc_common.names import BACKEND_TYPE_ENUMS
from svc_common.prices import PriceTable, Units, UnknownPrice

__all__ = ["Debit", "LeaseBook"]

log = logging.getLogger(__name__)

# No request starts on a lease this close to its use-until time: billing-svc's clock and ours
# may differ a little, and a request started on it must count as started in time.
USE_MARGIN_S = 1.0
# After billing-svc answered "no lease" (the balance cannot spare one), requests of that user and
# routes reserve per request for this long before a lease is asked for again.
NO_LEASE_S = 3.0
# How often leases are looked at for closing.
CLOSE_EVERY_S = 1.0
# A request that finds no room on the lease billing-svc just opened asks for another at most this
# many times, then reserves on its own (leases shrink with the balance: it will not get one).
OPENS_PER_REQUEST = 2

_LeaseKey = tuple[str, tuple[Route, ...]]  # (user id, the request's routes, primary first)

_OPENS = Counter(
    "credit_lease_opens",
    "OpenLease calls by result: opened; no_lease (the balance spares none); too_short (ends too"
    " soon to use, given back at once); failed (the call raised)",
    ["backend_type", "result"],
    registry=REGISTRY,
)
_DEBITS = Counter(
    "credit_lease_debits",
    "Member requests' worst cases set aside, by result: lease (debited from a credit lease) or"
    " reserve (no lease, no room, or a no-lease window: the request reserves per request)",
    ["backend_type", "result"],
    registry=REGISTRY,
)
_CLOSES = Counter(
    "credit_lease_closes",
    "Closes of credit leases, by result: closed; retry (billing-svc did not answer: tried again"
    " next round); unknown (billing-svc knows no such lease); expired (not closed before its"
    " expiry) and expired_in_flight (a request on it never ended): billing-svc's sweeper"
    " returns those",
    ["backend_type", "result"],
    registry=REGISTRY,
)
_OPEN_LEASES = Gauge(
    "credit_leases_open",
    "Credit leases this process holds and has not closed yet (in use, or retired and waiting for"
    " their requests or their close)",
    ["backend_type"],
    registry=REGISTRY,
)


class _Lease:
    """One open lease, as this process spends it. `remaining` is what billing-svc set aside less
    the worst cases of the requests in flight and the costs of those that ended."""

    __slots__ = (
        "balance_at_open",
        "caller",
        "expires_at",
        "in_flight",
        "last_used",
        "lease_id",
        "prices",
        "published",
        "remaining",
        "use_until",
    )

    def __init__(
        self,
        lease_id: str,
        caller: Caller,
        prices: PriceTable,
        amount: int,
        balance_at_open: int,
        use_until: float,
        expires_at: float,
        now: float,
    ) -> None:
        self.lease_id = lease_id
        self.caller = caller  # whose lease it is: the close is made as this caller
        self.prices = prices
        self.remaining = amount
        self.balance_at_open = balance_at_open
        self.use_until = use_until  # monotonic clock
        self.expires_at = expires_at  # monotonic clock
        self.in_flight = 0
        self.published = 0  # usage events queued with its lease_id
        self.last_used = now


@dataclass(frozen=True, slots=True)
class Debit:
    """One request's worst case, taken from a lease before its provider call."""

    lease_id: str
    worst_micros: int
    # What the user has: the balance when the lease opened plus the lease's unspent rest.
    balance_micros: int
    lease: _Lease = field(repr=False, compare=False)


class LeaseBook:
    """This process's credit leases, one current lease per (user, routes), under one backend
    type. `take` before a member call, `finish` once its usage event is queued, `aclose` at
    shutdown (after the calls and their usage events are done)."""

    def __init__(
        self,
        billing: billing_pb2_grpc.BillingServiceStub,
        service_token: str,
        *,
        holder: str,
        backend_type: str,
        timeout_s: float,
        idle_s: float,
    ) -> None:
        """`holder` names this process for operators (host and process id); `timeout_s` bounds
        each call to billing-svc; a lease no request took from for `idle_s` is closed."""
        self._billing = billing
        self._token = service_token
        self._holder = holder
        self._backend_type = BACKEND_TYPE_ENUMS[backend_type]
        self._timeout = timeout_s
        self._idle_s = idle_s
        self._current: dict[_LeaseKey, _Lease] = {}
        # Replaced, or due but not yet closed (in flight, or billing-svc did not answer).
        self._retired: list[_Lease] = []
        self._opening: dict[_LeaseKey, asyncio.Future[_Lease | None]] = {}
        self._no_lease_until: dict[_LeaseKey, float] = {}
        self._closer: asyncio.Task[None] | None = None
        self._between_rounds = asyncio.Event()
        self._between_rounds.set()
        self._closed = False
        # Label children bound once: take() is on every member request's path.
        self._debited = _DEBITS.labels(backend_type, "lease")
        self._reserving = _DEBITS.labels(backend_type, "reserve")
        self._opens = {
            result: _OPENS.labels(backend_type, result)
            for result in ("opened", "no_lease", "too_short", "failed")
        }
        self._closes = {
            result: _CLOSES.labels(backend_type, result)
            for result in ("closed", "retry", "unknown", "expired", "expired_in_flight")
        }
        self._held = _OPEN_LEASES.labels(backend_type)

    async def take(
        self,
        who: Caller,
        routes: Sequence[Route],
        worst_case: common_pb2.Usage,
        timeout_s: float,
    ) -> Debit | None:
        """Debit the worst case of `worst_case` on the dearest of `routes` from the user's lease,
        opening one when there is none with room. None: the balance cannot spare a lease, and
        the caller reserves per request (which answers INSUFFICIENT_CREDITS when it cannot
        spare this request either). OpenLease's refusals (an unpriced route, bad input,
        billing-svc unavailable) pass through as a Reserve's would."""
        key = (who.user_id, tuple(routes))
        units = Units(
            worst_case.input_tokens,
            worst_case.output_tokens,
            worst_case.images,
            worst_case.image_size,
            worst_case.image_quality,
        )
        opens = 0
        while True:
            now = time.monotonic()
            lease = self._current.get(key)
            if lease is not None:
                debit = _debit(lease, key[1], units, now)
                if debit is not None:
                    self._debited.inc()
                    return debit
            no_lease_until = self._no_lease_until.get(key)
            if no_lease_until is not None:
                if now < no_lease_until:
                    self._reserving.inc()
                    return None
                del self._no_lease_until[key]
            if opens == OPENS_PER_REQUEST:
                self._reserving.inc()
                return None
            opens += 1
            opening = self._opening.get(key)
            if opening is None:
                # One OpenLease per key at a time: the requests that arrive meanwhile wait for it.
                opening = asyncio.ensure_future(self._open(who, key, units, timeout_s))
                self._opening[key] = opening
                opening.add_done_callback(functools.partial(self._opened, key))
            # Shielded: a waiter that goes away does not cancel the others' OpenLease.
            if await asyncio.shield(opening) is None:
                self._reserving.inc()
                return None

    def finish(
        self, debit: Debit, provider: str, model: str, units: Units, *, published: bool
    ) -> None:
        """The request ended: the part of its worst case that its units (on the route it took)
        did not cost goes back to the lease. `published`: its usage event, naming the lease, was
        queued. Never awaits (it runs where a cancelled task cleans up)."""
        lease = debit.lease
        lease.in_flight -= 1
        if published:
            lease.published += 1
        try:
            cost = lease.prices.cost(provider, model, units)
        except UnknownPrice:
            return  # billing-svc prices it; keep the whole worst case spent here
        if cost < debit.worst_micros:
            lease.remaining += debit.worst_micros - cost

    async def _open(
        self, who: Caller, key: _LeaseKey, units: Units, timeout_s: float
    ) -> _Lease | None:
        request = billing_pb2.OpenLeaseRequest(
            backend_type=self._backend_type,
            routes=[billing_pb2.Route(provider=r.provider, model=r.model) for r in key[1]],
            worst_case=common_pb2.Usage(
                input_tokens=units.input_tokens,
                output_tokens=units.output_tokens,
                images=units.images,
                image_size=units.image_size,
                image_quality=units.image_quality,
            ),
            holder=self._holder,
        )
        try:
            answer = await self._billing.OpenLease(
                request,
                metadata=forward_metadata(self._token, who),
                timeout=min(timeout_s, self._timeout),
            )
        except grpc.aio.AioRpcError as err:
            self._opens["failed"].inc()
            raise reraise(from_rpc_error(err)) from None
        now, wall = time.monotonic(), time.time()
        if not answer.lease_id:
            self._opens["no_lease"].inc()
            self._no_lease_until[key] = now + NO_LEASE_S
            return None
        lease = _Lease(
            answer.lease_id,
            who,
            PriceTable.from_unit_prices(
                (
                    p.provider,
                    p.model,
                    p.unit,
                    p.image_size,
                    p.image_quality,
                    p.price_micros,
                    p.per_units,
                )
                for p in answer.prices
            ),
            answer.amount_micros,
            answer.balance_micros,
            use_until=now + (answer.use_until - wall),
            expires_at=now + (answer.expires_at - wall),
            now=now,
        )
        self._held.inc()  # until it is closed or dropped (_close, _due)
        if self._closer is None and not self._closed:
            self._closer = asyncio.get_running_loop().create_task(self._close_due_leases())
        if now >= lease.use_until - USE_MARGIN_S:
            # Too short-lived to start a request on (BILLING_SVC_LEASE_USE_S under the margin):
            # given back at once, and requests reserve per request.
            log.warning(
                "credit lease %s ends too soon to use; reserving per request", lease.lease_id
            )
            self._opens["too_short"].inc()
            self._retired.append(lease)
            self._no_lease_until[key] = now + NO_LEASE_S
            return None
        self._opens["opened"].inc()
        replaced = self._current.get(key)
        if replaced is not None:
            self._retired.append(replaced)  # closed once its requests in flight have ended
        self._current[key] = lease
        return lease

    def _opened(self, key: _LeaseKey, opening: asyncio.Future[_Lease | None]) -> None:
        if self._opening.get(key) is opening:
            del self._opening[key]
        if not opening.cancelled():
            opening.exception()  # retrieved: its waiters (if any remain) raise it

    async def _close_due_leases(self) -> None:
        while True:
            await asyncio.sleep(CLOSE_EVERY_S)
            # aclose cancels this task only between rounds: a round cancelled mid-way would lose
            # the leases it took off the lists, closed by nobody until they expire.
            self._between_rounds.clear()
            try:
                await self._close(self._due(time.monotonic()))
            except Exception:
                # Never the end of closing: a lease left open costs the user its credits until
                # it expires.
                log.exception("closing credit leases failed; trying again")
            finally:
                self._between_rounds.set()

    def _due(self, now: float) -> list[_Lease]:
        """The leases to close now (taken out of use here, with no await before the check)."""
        for key, lease in list(self._current.items()):
            if now - lease.last_used >= self._idle_s or now >= lease.use_until - USE_MARGIN_S:
                del self._current[key]
                self._retired.append(lease)
        for key, until in list(self._no_lease_until.items()):
            if now >= until:
                del self._no_lease_until[key]
        due, waiting = [], []
        for lease in self._retired:
            if lease.in_flight == 0:
                due.append(lease)
            elif now < lease.expires_at:
                waiting.append(lease)
            else:  # a request that never ended: billing-svc's sweeper has returned the lease
                log.error("credit lease %s expired with requests in flight", lease.lease_id)
                self._closes["expired_in_flight"].inc()
                self._held.dec()
        self._retired = waiting
        return due

    async def _close(self, leases: list[_Lease]) -> None:
        if not leases:
            return
        closed = await asyncio.gather(*(self._close_one(lease) for lease in leases))
        now = time.monotonic()
        for lease, result in zip(leases, closed, strict=True):
            if result == "failed":
                # Not closed (billing-svc unreachable): again on the next round, until it
                # expires and billing-svc's sweeper returns it.
                result = "retry" if now < lease.expires_at else "expired"
            self._closes[result].inc()
            if result == "retry":
                self._retired.append(lease)
            else:
                self._held.dec()

    async def _close_one(self, lease: _Lease) -> str:
        """closed, unknown (billing-svc knows no such lease of this user), or failed."""
        request = billing_pb2.CloseLeaseRequest(lease_id=lease.lease_id, requests=lease.published)
        try:
            await self._billing.CloseLease(
                request, metadata=forward_metadata(self._token, lease.caller), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                log.error("credit lease %s unknown to billing-svc at close", lease.lease_id)
                return "unknown"
            log.warning(
                "credit lease %s not closed (%s); trying again", lease.lease_id, err.code().name
            )
            return "failed"
        except Exception:
            log.exception("credit lease %s not closed; trying again", lease.lease_id)
            return "failed"
        return "closed"

    async def aclose(self) -> None:
        """Shutdown: close every lease with no request in flight (the others, and any close that
        fails, billing-svc's sweeper returns at expiry)."""
        self._closed = True
        if self._closer is not None:
            # A round in progress finishes first (each close is bounded by the call timeout).
            await self._between_rounds.wait()
            self._closer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer
            self._closer = None
        self._retired.extend(self._current.values())
        self._current.clear()
        due = [lease for lease in self._retired if lease.in_flight == 0]
        self._retired = [lease for lease in self._retired if lease.in_flight > 0]
        if self._retired:
            log.warning("%d credit leases still in use at shutdown", len(self._retired))
        try:
            async with asyncio.timeout(self._timeout):
                await self._close(due)
        except TimeoutError:
            log.warning("credit leases not all closed at shutdown; they expire in billing-svc")


def _debit(lease: _Lease, routes: tuple[Route, ...], units: Units, now: float) -> Debit | None:
    """Take the request's worst case from the lease if it has room and may still be used. No
    await in here: nothing else takes from the lease between the check and the debit."""
    if now >= lease.use_until - USE_MARGIN_S:
        return None
    try:
        worst = lease.prices.costliest([(r.provider, r.model) for r in routes], units)
    except UnknownPrice:
        return None  # billing-svc decides, and refuses, as a Reserve would
    if worst > lease.remaining:
        return None
    lease.remaining -= worst
    lease.in_flight += 1
    lease.last_used = now
    return Debit(lease.lease_id, worst, lease.balance_at_open + lease.remaining, lease)
