"""Credit leases: OpenLease and CloseLease (billing.leases). The usage consumer charges events
against leases (billing_svc.settlement) and the sweeper returns the expired (billing_svc.sweeper).

A lease is taken from available_micros exactly like a hold (one guarded debit, the account row
locked), so holds and leases together never exceed the balance.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from billing_svc.accounts import LEASE_PREFIX, LEASE_RETURN_PREFIX, ensure_accounts
from svc_common.errors import NotFound

LEASE_ID_PREFIX = "lease_"


@dataclass(frozen=True, slots=True)
class Lease:
    lease_id: str  # "" when the balance could not spare one
    amount_micros: int
    balance_micros: int  # available after the lease, not counting it
    use_until: int  # unix seconds
    expires_at: int  # unix seconds


# Sizing and taking a lease in one statement, so the size is computed from the balance it is
# taken from: the account row is locked first (FOR UPDATE returns its newest version even when a
# concurrent hold or lease changed it after this statement's snapshot), the debit is guarded by
# that balance, and the lease and its ledger row are inserted with it, all or nothing. No row:
# no account. A row without amount: the balance cannot spare a lease of at least one request.
_OPEN = """
WITH account AS (
    SELECT available_micros FROM billing.accounts WHERE user_id = $2 FOR UPDATE
), sized AS (
    SELECT available_micros, least($4::bigint, available_micros / $5::bigint) AS amount
      FROM account
), debit AS (
    UPDATE billing.accounts AS a
       SET available_micros = a.available_micros - s.amount, updated_at = now()
      FROM sized AS s
     WHERE a.user_id = $2 AND s.amount >= $3::bigint AND a.available_micros >= s.amount
    RETURNING a.available_micros, s.amount
), lease AS (
    INSERT INTO billing.leases
        (lease_id, user_id, holder, backend_type, amount_micros, use_until, expires_at)
    SELECT $1, $2, $6, $7, amount, now() + $8::double precision * interval '1 second',
           now() + ($8::double precision + $9::double precision) * interval '1 second'
      FROM debit
    RETURNING use_until, expires_at
), recorded AS (
    INSERT INTO billing.ledger
        (event_id, kind, user_id, amount_micros, lease_id, hold_micros, backend_type, provider,
         model)
    SELECT $10 || $1, 'lease', $2, 0, $1, amount, $7, $11, $12 FROM debit
)
SELECT s.available_micros, d.available_micros AS balance_micros, d.amount,
       floor(extract(epoch FROM l.use_until))::bigint AS use_until,
       floor(extract(epoch FROM l.expires_at))::bigint AS expires_at
  FROM sized AS s LEFT JOIN debit AS d ON true LEFT JOIN lease AS l ON true
"""


async def open_lease(
    pool: asyncpg.Pool,
    *,
    user_id: str,
    backend_type: str,
    holder: str,
    primary_route: tuple[str, str],
    request_micros: int,
    max_amount_micros: int,
    share_divisor: int,
    use_s: float,
    ttl_s: float,
    starting_balance_micros: int,
) -> Lease:
    """Set aside min(max_amount_micros, available // share_divisor) for the user, if that covers
    one request (`request_micros`, the worst case of the costliest route); else no lease."""
    lease_id = LEASE_ID_PREFIX + uuid.uuid4().hex
    provider, model = primary_route
    args = (
        lease_id,
        user_id,
        request_micros,
        max_amount_micros,
        share_divisor,
        holder,
        backend_type,
        use_s,
        ttl_s,
        LEASE_PREFIX,
        provider,
        model,
    )
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_OPEN, *args)
        if row is None:
            # A user's first call: create the account (its starting balance) and try once more.
            await ensure_accounts(conn, [user_id], starting_balance_micros)
            row = await conn.fetchrow(_OPEN, *args)
    if row is None:  # the account was never created: nothing a retry would change
        raise RuntimeError(f"no account for {user_id!r} after creating it")
    if row["amount"] is None:
        return Lease("", 0, row["available_micros"], 0, 0)
    return Lease(
        lease_id, row["amount"], row["balance_micros"], row["use_until"], row["expires_at"]
    )


# The caller's own lease, its account locked (lock order: the account first). No row: the lease
# does not exist or is another user's, which the caller is not told apart.
_LOCK_ACCOUNT_OF_LEASE = """
SELECT a.available_micros
  FROM billing.accounts AS a JOIN billing.leases AS l ON l.user_id = a.user_id
 WHERE l.lease_id = $1 AND l.user_id = $2
   FOR UPDATE OF a
"""

_CLOSE = """
UPDATE billing.leases SET status = 'closing', expected_events = $2
 WHERE lease_id = $1 AND status = 'open'
RETURNING events
"""

# Leases back to their accounts: each one's unspent rest, with its lease_return ledger row, as
# `returned` (closed, its events applied) or `expired` (swept). Only leases still open or
# closing, and with $4 only those past their expiry. The accounts must be locked already (the
# lock order: accounts first).
_RETURN = """
WITH returned AS (
    UPDATE billing.leases SET status = $3, returned_at = now()
     WHERE lease_id = ANY($1::text[]) AND status IN ('open', 'closing')
       AND (NOT $4::boolean OR expires_at <= now())
    RETURNING lease_id, user_id, backend_type, amount_micros - spent_micros AS unspent
), recorded AS (
    INSERT INTO billing.ledger (event_id, kind, user_id, amount_micros, lease_id, hold_micros,
                                backend_type)
    SELECT $2 || lease_id, 'lease_return', user_id, 0, lease_id, unspent, backend_type
      FROM returned
), balances AS (
    UPDATE billing.accounts AS a
       SET available_micros = a.available_micros + r.total, updated_at = now()
      FROM (SELECT user_id, sum(unspent)::bigint AS total FROM returned GROUP BY user_id) AS r
     WHERE a.user_id = r.user_id
)
SELECT count(*) FROM returned
"""


async def return_leases(
    conn: asyncpg.Connection, lease_ids: list[str], *, status: str, only_expired: bool
) -> int:
    """Give the unspent rest of `lease_ids` back (their accounts locked by the caller); returns
    how many were returned. The one way a lease ends outside a settlement batch."""
    returned: int = await conn.fetchval(
        _RETURN, lease_ids, LEASE_RETURN_PREFIX, status, only_expired
    )
    return returned


async def close_lease(pool: asyncpg.Pool, *, user_id: str, lease_id: str, requests: int) -> int:
    """The holder starts no more requests on the lease and published `requests` usage events
    against it: return the unspent rest now if they are all applied, else when the last one is
    (billing_svc.settlement). A lease closing, returned or expired already is left as it is.
    Returns the available balance."""
    async with pool.acquire() as conn, conn.transaction():
        available: int | None = await conn.fetchval(_LOCK_ACCOUNT_OF_LEASE, lease_id, user_id)
        if available is None:
            raise NotFound(f"there is no lease {lease_id!r} for this user", param="lease_id")
        applied = await conn.fetchval(_CLOSE, lease_id, requests)
        if applied is None or applied < requests:
            return available
        await return_leases(conn, [lease_id], status="returned", only_expired=False)
        now_available: int = await conn.fetchval(
            "SELECT available_micros FROM billing.accounts WHERE user_id = $1", user_id
        )
        return now_available
