"""Accounts and holds: the synchronous money operations behind the gRPC API (and the grant command).

Every balance change is a single guarded statement inside a transaction with its ledger row; the
CHECK (available_micros >= 0) on billing.accounts backs the guards up. Lock order, everywhere in
billing-svc: account rows (by user_id), then hold rows, then lease rows (billing_svc.leases), so
concurrent operations never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from billing_svc.prices import format_credits
from svc_common.errors import FailedPrecondition, InsufficientCredits, InvalidArgument, NotFound

# Ledger ids of rows that are not usage events; a request id may not look like one of them.
GRANT_PREFIX = "grant:"
RELEASE_PREFIX = "release:"
EXPIRY_PREFIX = "expiry:"
LEASE_PREFIX = "lease:"
LEASE_RETURN_PREFIX = "lease-return:"
RESERVED_PREFIXES = (GRANT_PREFIX, RELEASE_PREFIX, EXPIRY_PREFIX, LEASE_PREFIX, LEASE_RETURN_PREFIX)

WELCOME_GRANT_PREFIX = "welcome:"


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    amount_micros: int
    balance_micros: int  # available after the hold
    expires_at: int  # unix seconds


@dataclass(frozen=True, slots=True)
class UsageTotal:
    backend_type: str
    provider: str
    model: str
    mode: str
    requests: int
    input_tokens: int
    output_tokens: int
    images: int
    cost_micros: int


async def ensure_accounts(
    conn: asyncpg.Connection, user_ids: Sequence[str], starting_balance_micros: int
) -> list[str]:
    """Create the accounts that do not exist yet, each with the starting balance granted once.

    Returns the users whose account was created now.
    """
    async with conn.transaction():
        created: list[str] = [
            r["user_id"]
            for r in await conn.fetch(
                "INSERT INTO billing.accounts (user_id)"
                " SELECT u FROM unnest($1::text[]) AS u ORDER BY u"
                " ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
                list(user_ids),
            )
        ]
        if created and starting_balance_micros > 0:
            granted = await conn.fetch(
                "INSERT INTO billing.ledger (event_id, kind, user_id, amount_micros, reason)"
                " SELECT $2 || $3 || u, 'grant', u, $4, 'starting balance'"
                " FROM unnest($1::text[]) AS u"
                " ON CONFLICT (event_id) DO NOTHING RETURNING user_id",
                created,
                GRANT_PREFIX,
                WELCOME_GRANT_PREFIX,
                starting_balance_micros,
            )
            await conn.execute(
                "UPDATE billing.accounts SET available_micros = available_micros + $2,"
                " updated_at = now() WHERE user_id = ANY($1::text[])",
                [r["user_id"] for r in granted],
                starting_balance_micros,
            )
        return created


# The common path of Reserve in one statement, so one round trip and one (implicit) transaction:
# debit the account, guarded by the balance, and insert the hold; both or neither. No row: the
# hold id is taken already (by a hold, or by a usage event that would make this hold's own event
# a duplicate that never settles it), the account does not exist, or its balance is short (the
# slow path tells which).
# A concurrent Reserve with the same request id can pass the NOT EXISTS and then collide on the
# hold's primary key: the unique violation aborts the whole statement, debit included.
_RESERVE = """
WITH debit AS (
    UPDATE billing.accounts SET available_micros = available_micros - $3, updated_at = now()
     WHERE user_id = $2 AND available_micros >= $3
       AND NOT EXISTS (SELECT FROM billing.holds WHERE hold_id = $1)
       AND NOT EXISTS (SELECT FROM billing.ledger WHERE event_id = $1)
    RETURNING available_micros
), hold AS (
    INSERT INTO billing.holds
        (hold_id, user_id, amount_micros, backend_type, provider, model, expires_at)
    SELECT $1, $2, $3, $4, $5, $6, now() + $7 * interval '1 second' FROM debit
    RETURNING extract(epoch FROM expires_at)::bigint AS expires_at
)
SELECT debit.available_micros, hold.expires_at FROM debit, hold
"""

_EXISTING_HOLD = """
SELECT h.user_id, h.amount_micros, h.status, h.backend_type, h.provider, h.model,
       extract(epoch FROM h.expires_at)::bigint AS expires_at, a.available_micros
  FROM billing.holds h JOIN billing.accounts a USING (user_id)
 WHERE h.hold_id = $1
"""


async def reserve(
    pool: asyncpg.Pool,
    *,
    user_id: str,
    request_id: str,
    backend_type: str,
    provider: str,
    model: str,
    amount_micros: int,
    ttl_s: int,
    starting_balance_micros: int,
) -> Hold:
    """Hold `amount_micros` for the request.

    A repeat of the same call (a retry after a lost answer) gets the same hold back; any other
    use of an existing hold id is refused (see `_existing_hold`)."""
    if request_id.startswith(RESERVED_PREFIXES):
        raise InvalidArgument(
            f"request_id must not start with {', '.join(RESERVED_PREFIXES)}", param="request_id"
        )
    args = (request_id, user_id, amount_micros, backend_type, provider, model, ttl_s)
    async with pool.acquire() as conn:
        account_checked = False
        while True:
            try:
                row = await conn.fetchrow(_RESERVE, *args)
            except asyncpg.UniqueViolationError:
                row = None  # a concurrent Reserve with this request id won; it is found below
            if row is not None:
                return Hold(request_id, amount_micros, row["available_micros"], row["expires_at"])
            # No hold taken: the hold exists already, the account does not, or it is short.
            existing = await _existing_hold(
                conn, request_id, user_id, amount_micros, backend_type, provider, model
            )
            if existing is not None:
                return existing
            if account_checked:
                break
            account_checked = True
            # Then try once more, even if a concurrent first Reserve of this user created it.
            await ensure_accounts(conn, [user_id], starting_balance_micros)
        available = await conn.fetchval(
            "SELECT available_micros FROM billing.accounts WHERE user_id = $1", user_id
        )
    raise InsufficientCredits(
        f"insufficient credits: the balance is {format_credits(available or 0)} credits and this"
        f" request needs up to {format_credits(amount_micros)} credits; ask for fewer tokens or"
        " images, or add credits"
    )


def _hold_id_taken() -> FailedPrecondition:
    # Says nothing of the hold or usage behind the id: it may be another user's.
    return FailedPrecondition(
        "request_id names a hold or usage of another request: mint a new request_id for every"
        " request",
        param="request_id",
    )


async def _existing_hold(
    conn: asyncpg.Connection,
    hold_id: str,
    user_id: str,
    amount_micros: int,
    backend_type: str,
    provider: str,
    model: str,
) -> Hold | None:
    """The hold `hold_id` when it is still open and was taken by this same call, None when there
    is none; a hold that is settled, released or expired, or that another call took (another
    user, amount or route), is refused: handing it back would let a request run unpaid."""
    row = await conn.fetchrow(_EXISTING_HOLD, hold_id)
    if row is None:
        if await conn.fetchval("SELECT true FROM billing.ledger WHERE event_id = $1", hold_id):
            raise _hold_id_taken()
        return None
    same_call = (
        row["user_id"] == user_id
        and row["amount_micros"] == amount_micros
        and (row["backend_type"], row["provider"], row["model"]) == (backend_type, provider, model)
    )
    if row["status"] != "open" or not same_call:
        raise _hold_id_taken()
    return Hold(hold_id, row["amount_micros"], row["available_micros"], row["expires_at"])


async def release(pool: asyncpg.Pool, *, user_id: str, hold_id: str) -> int:
    """Return an open hold of the user's to their balance; returns the available balance."""
    async with pool.acquire() as conn, conn.transaction():
        owner = await conn.fetchval("SELECT user_id FROM billing.holds WHERE hold_id = $1", hold_id)
        if owner != user_id:
            raise NotFound(f"there is no hold {hold_id!r} for this user", param="hold_id")
        available: int = await conn.fetchval(
            "SELECT available_micros FROM billing.accounts WHERE user_id = $1 FOR UPDATE", user_id
        )
        hold = await conn.fetchrow(
            "UPDATE billing.holds SET status = 'released', settled_at = now()"
            " WHERE hold_id = $1 AND status = 'open'"
            " RETURNING amount_micros, backend_type, provider, model",
            hold_id,
        )
        if hold is None:  # settled, expired or released already: nothing to return
            return available
        available = await conn.fetchval(
            "UPDATE billing.accounts SET available_micros = available_micros + $2,"
            " updated_at = now() WHERE user_id = $1 RETURNING available_micros",
            user_id,
            hold["amount_micros"],
        )
        await conn.execute(
            "INSERT INTO billing.ledger (event_id, kind, user_id, amount_micros, hold_id,"
            " hold_micros, backend_type, provider, model)"
            " VALUES ($1, 'release', $2, 0, $3, $4, $5, $6, $7)",
            RELEASE_PREFIX + hold_id,
            user_id,
            hold_id,
            hold["amount_micros"],
            hold["backend_type"],
            hold["provider"],
            hold["model"],
        )
        return available


async def balance(
    pool: asyncpg.Pool, *, user_id: str, starting_balance_micros: int
) -> tuple[int, int]:
    """(balance, held in open holds) for the user, creating the account on first sight.

    The balance is available plus the unspent part of the user's open and closing leases: a
    lease's credits are still the user's to spend (on the lease's requests, or back to available
    when it is returned)."""
    query = (
        "SELECT a.available_micros + (SELECT coalesce(sum(l.amount_micros - l.spent_micros), 0)"
        "  FROM billing.leases l WHERE l.user_id = a.user_id"
        "  AND l.status IN ('open', 'closing'))::bigint AS balance_micros,"
        " (SELECT coalesce(sum(h.amount_micros), 0) FROM billing.holds h"
        "  WHERE h.user_id = a.user_id AND h.status = 'open')::bigint AS held_micros"
        " FROM billing.accounts a WHERE a.user_id = $1"
    )
    async with pool.acquire() as conn:
        row = await conn.fetchrow(query, user_id)
        if row is None:
            await ensure_accounts(conn, [user_id], starting_balance_micros)
            row = await conn.fetchrow(query, user_id)
    return row["balance_micros"], row["held_micros"]


async def grant(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    amount_micros: int,
    grant_id: str,
    reason: str,
    starting_balance_micros: int,
) -> int:
    """Credit the user once per grant id; returns the available balance."""
    if not user_id:
        raise InvalidArgument("user_id is required", param="user_id")
    if not grant_id:
        raise InvalidArgument(
            "grant_id is required (it makes the grant idempotent)", param="grant_id"
        )
    if amount_micros <= 0:
        raise InvalidArgument("amount_micros must be positive", param="amount_micros")
    await ensure_accounts(conn, [user_id], starting_balance_micros)
    event_id = GRANT_PREFIX + grant_id
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO billing.ledger (event_id, kind, user_id, amount_micros, reason)"
            " VALUES ($1, 'grant', $2, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING true",
            event_id,
            user_id,
            amount_micros,
            reason or None,
        )
        if inserted:
            new_balance: int = await conn.fetchval(
                "UPDATE billing.accounts SET available_micros = available_micros + $2,"
                " updated_at = now() WHERE user_id = $1 RETURNING available_micros",
                user_id,
                amount_micros,
            )
            return new_balance
        prior = await conn.fetchrow(
            "SELECT user_id, amount_micros FROM billing.ledger WHERE event_id = $1", event_id
        )
        if prior["user_id"] != user_id or prior["amount_micros"] != amount_micros:
            raise InvalidArgument(
                f"grant_id {grant_id!r} was already used for a different grant", param="grant_id"
            )
        current: int = await conn.fetchval(
            "SELECT available_micros FROM billing.accounts WHERE user_id = $1", user_id
        )
        return current


async def list_usage(
    pool: asyncpg.Pool,
    *,
    user_id: str,
    backend_type: str | None,
    from_unix: int | None,
    to_unix: int | None,
) -> list[UsageTotal]:
    """Usage totals per backend type, provider, model and mode, in [from_unix, to_unix)."""
    rows = await pool.fetch(
        "SELECT backend_type, provider, model, mode, count(*) AS requests,"
        " sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,"
        " sum(images)::bigint AS images, sum(-amount_micros)::bigint AS cost_micros"
        " FROM billing.ledger"
        " WHERE user_id = $1 AND kind IN ('charge', 'usage')"
        " AND ($2::text IS NULL OR backend_type = $2)"
        " AND ($3::bigint IS NULL OR occurred_at >= to_timestamp($3))"
        " AND ($4::bigint IS NULL OR occurred_at < to_timestamp($4))"
        " GROUP BY backend_type, provider, model, mode"
        " ORDER BY backend_type, provider, model, mode",
        user_id,
        backend_type,
        from_unix,
        to_unix,
    )
    return [UsageTotal(**dict(r)) for r in rows]
