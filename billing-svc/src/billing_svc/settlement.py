"""Applying usage events: ledger rows, hold settlements, lease charges and charges, a batch per
transaction.

A batch is applied under row locks on the accounts of its member-mode users (taken in user_id
order, the lock order of billing-svc), then on the holds and leases its events name, so nothing
else can move those balances, settle those holds or return those leases meanwhile; an event
whose ledger row exists already is skipped, which makes redelivery and double publishing
harmless. The new balances and leases are computed here and written with multi-row statements;
the CHECKs on accounts and leases still refuse any negative balance or overspent lease.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from billing_svc.accounts import LEASE_RETURN_PREFIX, ensure_accounts
from billing_svc.prices import PriceTable, Units, UnknownPrice
from svc_common.usage_events import UsageEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Hold:
    user_id: str
    amount_micros: int
    status: str


@dataclass(slots=True)
class _Lease:
    user_id: str
    backend_type: str
    amount_micros: int
    spent_micros: int
    events: int
    expected_events: int | None
    status: str
    changed: bool = False

    def live(self) -> bool:
        return self.status in ("open", "closing")


@dataclass(frozen=True, slots=True)
class Applied:
    new: int  # events applied now
    duplicates: int  # events whose ledger row existed already


_LEDGER_COLUMNS = 20

_INSERT_LEDGER = """
INSERT INTO billing.ledger (
    event_id, kind, user_id, amount_micros, cost_micros, shortfall_micros, hold_id, hold_micros,
    backend_type, provider, model, mode, outcome, input_tokens, output_tokens, images,
    image_size, image_quality, occurred_at, lease_id)
SELECT e.event_id, e.kind, e.user_id, e.amount_micros, e.cost_micros, e.shortfall_micros,
       e.hold_id, e.hold_micros, e.backend_type, e.provider, e.model, e.mode, e.outcome,
       e.input_tokens, e.output_tokens, e.images, e.image_size, e.image_quality,
       CASE WHEN e.ended_at_ms > 0 THEN to_timestamp(e.ended_at_ms::double precision / 1000)
            ELSE now() END,
       e.lease_id
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
              $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[],
              $13::text[], $14::bigint[], $15::bigint[], $16::bigint[], $17::text[], $18::text[],
              $19::bigint[], $20::text[])
    AS e(event_id, kind, user_id, amount_micros, cost_micros, shortfall_micros, hold_id,
         hold_micros, backend_type, provider, model, mode, outcome, input_tokens, output_tokens,
         images, image_size, image_quality, ended_at_ms, lease_id)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


# The batch's writes in one statement (one round trip while the account rows are locked): the
# settled holds ($21), the new balances ($22 users, $23 amounts), the leases charged or
# returned ($24 ids, $25 spent, $26 events, $27 status), then the ledger rows (charges, usage
# and the returned leases' lease_return rows).
_SETTLE = (
    """
WITH settled_holds AS (
    UPDATE billing.holds SET status = 'settled', settled_at = now()
     WHERE hold_id = ANY($21::text[]) AND status = 'open'
), balances AS (
    UPDATE billing.accounts AS a SET available_micros = v.available, updated_at = now()
      FROM unnest($22::text[], $23::bigint[]) AS v(user_id, available)
     WHERE a.user_id = v.user_id AND a.available_micros <> v.available
), leases AS (
    UPDATE billing.leases AS l
       SET spent_micros = v.spent, events = v.events, status = v.status,
           returned_at = CASE WHEN v.status = 'returned' THEN now() END
      FROM unnest($24::text[], $25::bigint[], $26::bigint[], $27::text[])
           AS v(lease_id, spent, events, status)
     WHERE l.lease_id = v.lease_id
)"""
    + _INSERT_LEDGER
)


class LedgerConflict(RuntimeError):
    """A member-mode ledger row appeared under our account locks: a bug, never commit it."""


async def apply_usage_events(
    conn: asyncpg.Connection,
    events: Sequence[UsageEvent],
    prices: PriceTable,
    starting_balance_micros: int,
) -> Applied:
    """Apply events (distinct event ids) in one transaction; returns how many were new."""
    member_users = sorted({e.user_id for e in events if e.mode == "member"})
    try:
        return await _apply(conn, events, prices, member_users)
    except _MissingAccounts:
        # Rare (an account is created by its first Reserve or GetBalance), so not checked up
        # front. Committed on its own: creating accounts takes no lock the batch could wait on.
        await ensure_accounts(conn, member_users, starting_balance_micros)
        return await _apply(conn, events, prices, member_users)


class _MissingAccounts(Exception):
    """A member-mode user of the batch has no account yet; roll back and create it first."""


async def _apply(
    conn: asyncpg.Connection,
    events: Sequence[UsageEvent],
    prices: PriceTable,
    member_users: list[str],
) -> Applied:
    async with conn.transaction():
        available: dict[str, int] = {}
        if member_users:
            rows = await conn.fetch(
                "SELECT user_id, available_micros FROM billing.accounts"
                " WHERE user_id = ANY($1::text[]) ORDER BY user_id FOR UPDATE",
                member_users,
            )
            available = {r["user_id"]: r["available_micros"] for r in rows}
            if len(available) < len(member_users):
                raise _MissingAccounts
        applied_before = {
            r["event_id"]
            for r in await conn.fetch(
                "SELECT event_id FROM billing.ledger WHERE event_id = ANY($1::text[])",
                [e.event_id for e in events],
            )
        }
        new = [e for e in events if e.event_id not in applied_before]
        if not new:
            return Applied(new=0, duplicates=len(events))
        hold_ids = [e.hold_id for e in new if e.mode == "member" and e.hold_id]
        holds: dict[str, _Hold] = {}
        if hold_ids:
            rows = await conn.fetch(
                "SELECT hold_id, user_id, amount_micros, status FROM billing.holds"
                " WHERE hold_id = ANY($1::text[]) FOR UPDATE",
                hold_ids,
            )
            holds = {
                r["hold_id"]: _Hold(r["user_id"], r["amount_micros"], r["status"]) for r in rows
            }
        lease_ids = [e.lease_id for e in new if e.mode == "member" and e.lease_id and not e.hold_id]
        leases: dict[str, _Lease] = {}
        if lease_ids:
            # Only leases of the batch's own (locked) accounts: anyone who changes a lease holds
            # its account's lock first, so these never wait. Another user's lease is not found.
            rows = await conn.fetch(
                "SELECT lease_id, user_id, backend_type, amount_micros, spent_micros, events,"
                " expected_events, status FROM billing.leases"
                " WHERE lease_id = ANY($1::text[]) AND user_id = ANY($2::text[])"
                " ORDER BY lease_id FOR UPDATE",
                lease_ids,
                member_users,
            )
            leases = {
                r["lease_id"]: _Lease(
                    r["user_id"],
                    r["backend_type"],
                    r["amount_micros"],
                    r["spent_micros"],
                    r["events"],
                    r["expected_events"],
                    r["status"],
                )
                for r in rows
            }

        ledger = _LedgerRows()
        settled: list[str] = []
        for event in new:
            if event.mode != "member":
                ledger.add(event, kind="usage", amount=0, cost=0, shortfall=0, hold_micros=0)
                continue
            if event.lease_id and not event.hold_id:
                _charge_lease(event, leases.get(event.lease_id), prices, available, ledger)
                continue
            hold = holds.get(event.hold_id) if event.hold_id else None
            if hold is not None and hold.user_id != event.user_id:
                log.error(
                    "usage event names a hold of another user; charging without it",
                    extra={"event_id": event.event_id},
                )
                hold = None
            held = hold.amount_micros if hold is not None and hold.status == "open" else 0
            cost = _cost(event, prices, held, "the hold")
            # The hold comes back in full, then the real cost is taken; what the balance cannot
            # cover (the usage outran its hold, or the hold had expired) is recorded as shortfall.
            funds = available[event.user_id] + held
            charged = min(cost, funds)
            available[event.user_id] = funds - charged
            if hold is not None and hold.status == "open":
                hold.status = "settled"
                settled.append(event.hold_id)
            ledger.add(
                event,
                kind="charge",
                amount=-charged,
                cost=cost,
                shortfall=cost - charged,
                hold_micros=held,
            )

        changed = {lease_id: lease for lease_id, lease in leases.items() if lease.changed}
        for lease_id, lease in changed.items():
            if lease.status == "returned":
                ledger.add_lease_return(lease_id, lease)
                available[lease.user_id] += lease.amount_micros - lease.spent_micros
        users = list(available)
        inserted = {
            r["event_id"]
            for r in await conn.fetch(
                _SETTLE,
                *ledger.columns(),
                settled,
                users,
                [available[u] for u in users],
                list(changed),
                [lease.spent_micros for lease in changed.values()],
                [lease.events for lease in changed.values()],
                [lease.status for lease in changed.values()],
            )
        }
        # A member row or lease return not inserted would leave a balance or lease changed
        # without its ledger row: refuse to commit.
        missing = [e.event_id for e in new if e.mode == "member" and e.event_id not in inserted]
        missing += [
            LEASE_RETURN_PREFIX + lease_id
            for lease_id, lease in changed.items()
            if lease.status == "returned" and LEASE_RETURN_PREFIX + lease_id not in inserted
        ]
        if missing:
            raise LedgerConflict(f"ledger rows appeared concurrently for {missing[:3]}")
        applied = sum(1 for e in new if e.event_id in inserted)
        return Applied(new=applied, duplicates=len(events) - applied)


def _charge_lease(
    event: UsageEvent,
    lease: _Lease | None,
    prices: PriceTable,
    available: dict[str, int],
    ledger: _LedgerRows,
) -> None:
    """Charge a member event against its lease: the lease pays what it can, the balance the
    rest, and what neither covers is shortfall. The last event a closing lease waits for
    returns the lease's unspent rest (written by the caller, in the same transaction)."""
    if lease is None or lease.user_id != event.user_id:
        # Not found among the batch's users' leases: none, or another user's.
        log.error(
            "usage event names a lease that is not its user's; charging without it",
            extra={"event_id": event.event_id},
        )
        lease = None
    elif not lease.live():
        # Returned (closed with fewer events than it had) or expired: like an expired hold.
        log.warning(
            "usage event names lease %s, %s already; charging the balance",
            event.lease_id,
            lease.status,
            extra={"event_id": event.event_id},
        )
        lease = None
    # A price removed since the lease opened: charge the worst case the holder debited from the
    # lease for this request (the event carries it; 0, so nothing, in events queued by a
    # text-svc from before the field).
    cost = _cost(event, prices, event.lease_debit_micros, "the lease debit")
    from_lease = 0
    if lease is not None:
        from_lease = min(cost, lease.amount_micros - lease.spent_micros)
        lease.spent_micros += from_lease
        lease.events += 1
        lease.changed = True
        if lease.status == "closing" and lease.events >= (lease.expected_events or 0):
            lease.status = "returned"
    from_available = min(cost - from_lease, available[event.user_id])
    available[event.user_id] -= from_available
    charged = from_lease + from_available
    ledger.add(
        event,
        kind="charge",
        amount=-charged,
        cost=cost,
        shortfall=cost - charged,
        hold_micros=from_lease,
        lease_id=event.lease_id if lease is not None else None,
    )


def _cost(event: UsageEvent, prices: PriceTable, held: int, what: str) -> int:
    """The event's cost at today's prices; without a price, `held`: the worst case `what` set
    aside for the request before its call."""
    units = Units(
        input_tokens=event.input_tokens,
        output_tokens=event.output_tokens,
        images=event.images,
        image_size=event.image_size,
        image_quality=event.image_quality,
    )
    if not (units.input_tokens or units.output_tokens or units.images):
        # Nothing generated (an "error" event) costs nothing, priced or not.
        return 0
    try:
        return prices.cost(event.provider, event.model, units)
    except UnknownPrice as exc:
        # The price was removed after the hold was taken (or the lease debited): charge the
        # worst case that was set aside.
        log.error(
            "%s; charging %s (%d micro-credits)",
            exc,
            what,
            held,
            extra={"event_id": event.event_id},
        )
        return held


class _LedgerRows:
    """Column arrays for the multi-row ledger insert."""

    def __init__(self) -> None:
        self._columns: list[list[object]] = [[] for _ in range(_LEDGER_COLUMNS)]

    def add(
        self,
        event: UsageEvent,
        *,
        kind: str,
        amount: int,
        cost: int,
        shortfall: int,
        hold_micros: int,
        lease_id: str | None = None,
    ) -> None:
        values = (
            event.event_id,
            kind,
            event.user_id,
            amount,
            cost,
            shortfall,
            event.hold_id or None,
            hold_micros,
            event.backend_type,
            event.provider,
            event.model,
            event.mode,
            event.outcome,
            event.input_tokens,
            event.output_tokens,
            event.images,
            event.image_size,
            event.image_quality,
            event.ended_at_ms,
            lease_id,
        )
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)

    def add_lease_return(self, lease_id: str, lease: _Lease) -> None:
        values = (
            LEASE_RETURN_PREFIX + lease_id,
            "lease_return",
            lease.user_id,
            0,
            0,
            0,
            None,
            lease.amount_micros - lease.spent_micros,
            lease.backend_type,
            None,
            None,
            None,
            None,
            0,
            0,
            0,
            "",
            "",
            0,
            lease_id,
        )
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)

    def columns(self) -> list[list[object]]:
        return self._columns
