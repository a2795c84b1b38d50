"""Applying usage events: ledger rows, hold settlements and charges, a batch per transaction.

A batch is applied under row locks on the accounts of its member-mode users (taken in user_id
order, the lock order of billing-svc), so nothing else can move those balances or settle those
holds meanwhile; an event whose ledger row exists already is skipped, which makes redelivery and
double publishing harmless. The new balances are computed here and written with multi-row
statements; the CHECK on accounts still refuses any negative balance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from billing_svc.accounts import ensure_accounts
from billing_svc.prices import PriceTable, Units, UnknownPrice
from svc_common.usage_events import UsageEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Hold:
    user_id: str
    amount_micros: int
    status: str


@dataclass(frozen=True, slots=True)
class Applied:
    new: int  # events applied now
    duplicates: int  # events whose ledger row existed already


_INSERT_LEDGER = """
INSERT INTO billing.ledger (
    event_id, kind, user_id, amount_micros, cost_micros, shortfall_micros, hold_id, hold_micros,
    backend_type, provider, model, mode, outcome, input_tokens, output_tokens, images,
    image_size, image_quality, occurred_at)
SELECT e.event_id, e.kind, e.user_id, e.amount_micros, e.cost_micros, e.shortfall_micros,
       e.hold_id, e.hold_micros, e.backend_type, e.provider, e.model, e.mode, e.outcome,
       e.input_tokens, e.output_tokens, e.images, e.image_size, e.image_quality,
       CASE WHEN e.ended_at_ms > 0 THEN to_timestamp(e.ended_at_ms::double precision / 1000)
            ELSE now() END
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
              $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[],
              $13::text[], $14::bigint[], $15::bigint[], $16::bigint[], $17::text[], $18::text[],
              $19::bigint[])
    AS e(event_id, kind, user_id, amount_micros, cost_micros, shortfall_micros, hold_id,
         hold_micros, backend_type, provider, model, mode, outcome, input_tokens, output_tokens,
         images, image_size, image_quality, ended_at_ms)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


# The batch's writes in one statement (one round trip while the account rows are locked): the
# settled holds ($20), the new balances ($21 users, $22 amounts), then the ledger rows.
_SETTLE = (
    """
WITH settled_holds AS (
    UPDATE billing.holds SET status = 'settled', settled_at = now()
     WHERE hold_id = ANY($20::text[]) AND status = 'open'
), balances AS (
    UPDATE billing.accounts AS a SET available_micros = v.available, updated_at = now()
      FROM unnest($21::text[], $22::bigint[]) AS v(user_id, available)
     WHERE a.user_id = v.user_id AND a.available_micros <> v.available
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

        ledger = _LedgerRows()
        settled: list[str] = []
        for event in new:
            if event.mode != "member":
                ledger.add(event, kind="usage", amount=0, cost=0, shortfall=0, hold_micros=0)
                continue
            hold = holds.get(event.hold_id) if event.hold_id else None
            if hold is not None and hold.user_id != event.user_id:
                log.error(
                    "usage event names a hold of another user; charging without it",
                    extra={"event_id": event.event_id},
                )
                hold = None
            held = hold.amount_micros if hold is not None and hold.status == "open" else 0
            cost = _cost(event, prices, held)
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

        users = list(available)
        inserted = {
            r["event_id"]
            for r in await conn.fetch(
                _SETTLE, *ledger.columns(), settled, users, [available[u] for u in users]
            )
        }
        missing = [e.event_id for e in new if e.mode == "member" and e.event_id not in inserted]
        if missing:
            raise LedgerConflict(f"ledger rows appeared concurrently for {missing[:3]}")
        return Applied(new=len(inserted), duplicates=len(events) - len(inserted))


def _cost(event: UsageEvent, prices: PriceTable, held: int) -> int:
    units = Units(
        input_tokens=event.input_tokens,
        output_tokens=event.output_tokens,
        images=event.images,
        image_size=event.image_size,
        image_quality=event.image_quality,
    )
    try:
        return prices.cost(event.provider, event.model, units)
    except UnknownPrice as exc:
        # The price was removed after the hold was taken: charge the worst case that was held.
        log.error(
            "%s; charging the hold (%d micro-credits)",
            exc,
            held,
            extra={"event_id": event.event_id},
        )
        return held


class _LedgerRows:
    """Column arrays for the multi-row ledger insert."""

    def __init__(self) -> None:
        self._columns: list[list[object]] = [[] for _ in range(19)]

    def add(
        self,
        event: UsageEvent,
        *,
        kind: str,
        amount: int,
        cost: int,
        shortfall: int,
        hold_micros: int,
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
        )
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)

    def columns(self) -> list[list[object]]:
        return self._columns
