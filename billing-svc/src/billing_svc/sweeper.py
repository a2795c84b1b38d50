"""The sweeper: open holds past their expiry go back to their accounts (ledger kind expiry), and
so does the unspent rest of open or closing credit leases past theirs (ledger kind lease_return):
a holder that died never closes its lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from billing_svc import metrics
from billing_svc.accounts import EXPIRY_PREFIX
from billing_svc.db import is_transient
from billing_svc.leases import return_leases

log = logging.getLogger(__name__)

_EXPIRE = """
WITH expired AS (
    UPDATE billing.holds SET status = 'expired', settled_at = now()
     WHERE hold_id = ANY($1::text[]) AND status = 'open' AND expires_at <= now()
    RETURNING hold_id, user_id, amount_micros, backend_type, provider, model
), recorded AS (
    INSERT INTO billing.ledger (event_id, kind, user_id, amount_micros, hold_id, hold_micros,
                                backend_type, provider, model)
    SELECT $2 || hold_id, 'expiry', user_id, 0, hold_id, amount_micros,
           backend_type, provider, model
      FROM expired
), returned AS (
    UPDATE billing.accounts AS a
       SET available_micros = a.available_micros + r.total, updated_at = now()
      FROM (SELECT user_id, sum(amount_micros)::bigint AS total FROM expired GROUP BY user_id) AS r
     WHERE a.user_id = r.user_id
)
SELECT count(*) FROM expired
"""


async def expire_holds(pool: asyncpg.Pool, limit: int = 500) -> int:
    """Expire up to `limit` open holds past their expiry; returns how many were expired."""
    async with pool.acquire() as conn:
        due = await conn.fetch(
            "SELECT hold_id, user_id FROM billing.holds"
            " WHERE status = 'open' AND expires_at <= now() ORDER BY expires_at LIMIT $1",
            limit,
        )
        if not due:
            return 0
        async with conn.transaction():
            # Accounts first, in user_id order: the lock order of billing-svc.
            await conn.execute(
                "SELECT 1 FROM billing.accounts WHERE user_id = ANY($1::text[])"
                " ORDER BY user_id FOR UPDATE",
                sorted({r["user_id"] for r in due}),
            )
            expired: int = await conn.fetchval(_EXPIRE, [r["hold_id"] for r in due], EXPIRY_PREFIX)
    if expired:
        metrics.HOLDS_EXPIRED.inc(expired)
        log.info("expired %d holds and returned their credits", expired)
    return expired


async def expire_leases(pool: asyncpg.Pool, limit: int = 500) -> int:
    """Return the unspent rest of up to `limit` open or closing leases past their expiry; returns
    how many were expired. A usage event of such a lease applied later is charged to the balance
    (like one of an expired hold)."""
    async with pool.acquire() as conn:
        due = await conn.fetch(
            "SELECT lease_id, user_id FROM billing.leases"
            " WHERE status IN ('open', 'closing') AND expires_at <= now()"
            " ORDER BY expires_at LIMIT $1",
            limit,
        )
        if not due:
            return 0
        async with conn.transaction():
            # Accounts first, in user_id order, then the leases: the lock order of billing-svc.
            await conn.execute(
                "SELECT 1 FROM billing.accounts WHERE user_id = ANY($1::text[])"
                " ORDER BY user_id FOR UPDATE",
                sorted({r["user_id"] for r in due}),
            )
            expired = await return_leases(
                conn, [r["lease_id"] for r in due], status="expired", only_expired=True
            )
    if expired:
        metrics.LEASES_EXPIRED.inc(expired)
        log.info("expired %d credit leases and returned their unspent credits", expired)
    return expired


class HoldSweeper:
    """Runs expire_holds and expire_leases every `interval_s` until stopped; every replica may
    run one."""

    def __init__(self, pool: asyncpg.Pool, interval_s: float, batch: int = 500) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._batch = batch
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                while await expire_holds(self._pool, self._batch) == self._batch:
                    if self._stopping.is_set():
                        return
                while await expire_leases(self._pool, self._batch) == self._batch:
                    if self._stopping.is_set():
                        return
                metrics.HOLD_SWEEPS.labels("ok").inc()
            except Exception as exc:
                metrics.HOLD_SWEEPS.labels("failed").inc()
                if not is_transient(exc):
                    log.exception("hold sweep failed")
                else:
                    log.warning("hold sweep failed: %s; retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)

    def stop(self) -> None:
        self._stopping.set()
