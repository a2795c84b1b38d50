"""The usage-event consumer: reads the usage stream in the billing consumer group and applies it.

At least once from Redis, exactly once in effect: an entry is XACKed only after the transaction
that applied it committed, and the ledger (keyed by event id) makes a second application a no-op.
On start a consumer first re-reads its own pending entries (id 0), then reads new ones (>).
Entries left pending by a consumer that died are claimed (XAUTOCLAIM) once idle past
claim_idle_ms. An entry that is not a valid usage event, or that was delivered more than
max_deliveries times, goes to the dead-letter stream with the reason and is acked, so it never
blocks the entries behind it. The stream is trimmed by MINID below what the group still needs.
Every metrics_interval_s the consumer reports the group's lag and pending entries and the
dead-letter stream's length (billing_svc.metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from billing_svc import metrics
from billing_svc.accounts import RESERVED_PREFIXES
from billing_svc.db import is_transient
from billing_svc.environment import Settings
from billing_svc.prices import PriceBook
from billing_svc.settlement import apply_usage_events
from svc_common.usage_events import InvalidUsageEvent, UsageEvent

log = logging.getLogger(__name__)

# No single request bills this many units; larger numbers are a producer bug (and overflow bigint).
MAX_UNITS = 10**12
# A lease debit is part of a lease's amount (bigint), so never more than this; more is a bug.
MAX_LEASE_DEBIT_MICROS = 2**63 - 1
# A consumer idle this long with nothing pending is a process that is gone: forget it.
STALE_CONSUMER_MS = 3_600_000
_MAX_BACKOFF_S = 5.0
# Where the lag must be counted by reading the stream (Redis before 7.0), it is read up to this.
_LAG_COUNT_CAP = 10_000

Entry = tuple[bytes, dict[bytes, bytes] | None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_event(fields: dict[Any, Any]) -> UsageEvent:
    """A usage event from stream fields, or InvalidUsageEvent saying what is wrong with it."""
    event = UsageEvent.from_fields(fields)
    if event.event_id.startswith(RESERVED_PREFIXES):
        raise InvalidUsageEvent(f"event_id must not start with {', '.join(RESERVED_PREFIXES)}")
    for name in ("input_tokens", "output_tokens", "images"):
        if getattr(event, name) >= MAX_UNITS:
            raise InvalidUsageEvent(f"{name} is implausibly large")
    if event.lease_debit_micros > MAX_LEASE_DEBIT_MICROS:
        raise InvalidUsageEvent("lease_debit_micros is implausibly large")
    if event.mode == "member" and not (event.provider and event.model):
        raise InvalidUsageEvent("a member-mode event needs provider and model to be priced")
    return event


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class _Stopped(Exception):
    """Stop was requested while waiting for Postgres: leave the entries pending."""


class UsageConsumer:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        prices: PriceBook,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._prices = prices
        self._stream = settings.usage_stream
        self._group = settings.consumer_group
        self._name = settings.consumer_name
        self._owns_redis = redis is None
        self._redis = redis or aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(),
            protocol=2,
            # Above the XREADGROUP block time, so a dead connection is noticed, never a slow read.
            socket_timeout=settings.block_ms / 1000 + 10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self._stopping = asyncio.Event()
        # Counters for logs and the benchmark.
        self.applied = 0
        self.duplicates = 0
        self.dead_lettered = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until stop(); survives Redis and Postgres restarts (reconnects with backoff)."""
        backoff = 0.1
        group_ready = False
        pending_cursor: bytes | str | None = "0"  # reading our own pending entries; None: new ones
        next_claim = next_trim = next_observe = 0.0
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                now = time.monotonic()
                if now >= next_claim:
                    await self.claim_idle()
                    next_claim = now + self._settings.claim_interval_s
                if now >= next_trim:
                    await self.trim()
                    next_trim = now + self._settings.trim_interval_s
                if now >= next_observe:
                    await self.observe_stream()
                    next_observe = now + self._settings.metrics_interval_s
                if pending_cursor is not None:
                    entries = await self._read(pending_cursor, block_ms=None)
                    if not entries:
                        pending_cursor = None
                        continue
                    pending_cursor = entries[-1][0]
                    await self.handle(entries, redelivered=True)
                else:
                    entries = await self._read(">", block_ms=self._settings.block_ms)
                    if entries:
                        await self.handle(entries, redelivered=False)
                        linger = self._settings.batch_linger_s
                        if linger and len(entries) < self._settings.batch_size:
                            # The stream is drained: let events gather for a moment, so the next
                            # transaction (and its commit) applies many instead of a few. Nobody
                            # waits on this: holds and leases were taken before the calls ran.
                            await self._pause(linger)
                backoff = 0.1
            except _Stopped:
                break
            except RedisError as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    group_ready = False  # Redis lost the stream (restarted without persistence)
                log.warning("redis: %s; retrying in %.1fs", exc, backoff)
                # Whatever was read and not acked is in our pending list: read it again first.
                pending_cursor = "0"
                await self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            except Exception:
                log.exception("usage consumer failed; retrying in %.1fs", backoff)
                pending_cursor = "0"
                await self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        if self._owns_redis:
            await self._redis.aclose()

    def stop(self) -> None:
        """Stop reading; the batch in flight is finished (or, if Postgres is down, left pending)."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def ensure_group(self) -> None:
        try:
            # From the stream's start: events published before billing first ran are billed too.
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, cursor: bytes | str, block_ms: int | None) -> list[Entry]:
        # RESP2 shape (the client is opened with protocol 2): [[stream, [(id, fields), ...]]]
        reply: Any = await self._redis.xreadgroup(
            self._group,
            self._name,
            {self._stream: cursor},
            count=self._settings.batch_size,
            block=block_ms,
        )
        if not reply:
            return []
        return list(reply[0][1])

    # -- one batch ---------------------------------------------------------------------------

    async def handle(self, entries: Sequence[Entry], *, redelivered: bool) -> None:
        """Dead-letter what cannot be applied, apply the rest in one transaction, then XACK."""
        deliveries = await self._delivery_counts(entries) if redelivered else {}
        events: list[tuple[bytes, UsageEvent]] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        gone: list[bytes] = []
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream while pending: nothing left to apply
                gone.append(entry_id)
                continue
            delivered = deliveries.get(entry_id, 1)
            if delivered > self._settings.max_deliveries:
                dead.append((entry_id, fields, f"not applied after {delivered} deliveries"))
                continue
            try:
                events.append((entry_id, parse_event(fields)))
            except InvalidUsageEvent as exc:
                dead.append((entry_id, fields, f"invalid usage event: {exc}"))
        if dead:
            await self._dead_letter(dead)
        done = await self._apply(events)
        if done or gone:
            await self._redis.xack(self._stream, self._group, *done, *gone)

    async def _delivery_counts(self, entries: Sequence[Entry]) -> dict[bytes, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(self._stream, self._group, entry_id, entry_id, 1)
            replies = await pipe.execute()
        return {info["message_id"]: info["times_delivered"] for reply in replies for info in reply}

    async def _dead_letter(self, dead: Sequence[tuple[bytes, dict[bytes, bytes], str]]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry_id, fields, reason in dead:
                dead_fields: dict[Any, Any] = {**fields}
                pipe.xadd(
                    self._settings.dead_letter_stream,
                    {
                        **dead_fields,
                        b"dead_letter_reason": reason.encode(),
                        b"dead_letter_stream": self._stream.encode(),
                        b"dead_letter_entry_id": entry_id,
                        b"dead_letter_consumer": self._name.encode(),
                    },
                )
            pipe.xack(self._stream, self._group, *(entry_id for entry_id, _, _ in dead))
            await pipe.execute()
        self.dead_lettered += len(dead)
        for _, _, reason in dead:
            metrics.DEAD_LETTERED.labels(
                "invalid" if reason.startswith("invalid") else "deliveries"
            ).inc()
        for entry_id, _, reason in dead:
            # An alert: someone has to look at the dead-letter stream.
            log.error(
                "usage entry %s moved to dead-letter stream %s: %s",
                entry_id.decode(),
                self._settings.dead_letter_stream,
                reason,
            )

    async def _apply(self, events: Sequence[tuple[bytes, UsageEvent]]) -> list[bytes]:
        """Apply events; returns the entry ids whose effect is committed (safe to ack)."""
        if not events:
            return []
        distinct: dict[str, UsageEvent] = {}
        for _, event in events:
            distinct.setdefault(event.event_id, event)
        try:
            await self._apply_until_done(list(distinct.values()))
            return [entry_id for entry_id, _ in events]
        except _Stopped:
            raise
        except Exception as exc:
            if len(distinct) == 1:
                self._log_failure(next(iter(distinct.values())), exc)
                return []
            log.warning("a batch of %d usage events failed (%s); isolating", len(distinct), exc)
        done: list[bytes] = []
        for entry_id, event in events:
            try:
                await self._apply_until_done([event])
            except _Stopped:
                raise
            except Exception as exc:
                self._log_failure(event, exc)
                continue
            done.append(entry_id)
        return done

    @staticmethod
    def _log_failure(event: UsageEvent, exc: Exception) -> None:
        # Left pending: claimed again after claim_idle_ms; dead-lettered after max_deliveries.
        log.error(
            "usage event could not be applied: %s: %s",
            type(exc).__name__,
            exc,
            extra={"event_id": event.event_id},
            exc_info=not isinstance(exc, asyncpg.PostgresError),
        )

    async def _apply_until_done(self, events: list[UsageEvent]) -> None:
        """One transaction for `events`, retried while Postgres is unreachable (no redelivery)."""
        backoff = 0.1
        while True:
            try:
                async with self._pool.acquire() as conn:
                    prices = await self._prices.current(conn)
                    with metrics.SETTLEMENT_SECONDS.time():
                        result = await apply_usage_events(
                            conn, events, prices, self._settings.starting_balance_micros
                        )
                self.applied += result.new
                self.duplicates += result.duplicates
                metrics.APPLIED.labels("new").inc(result.new)
                metrics.APPLIED.labels("duplicate").inc(result.duplicates)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self._stopping.is_set():
                    raise _Stopped from exc
                log.warning(
                    "postgres: %s; retrying the batch in %.1fs", type(exc).__name__, backoff
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    # -- housekeeping ------------------------------------------------------------------------

    async def observe_stream(self) -> None:
        """Report the group's lag and pending entries and the dead-letter stream's length."""
        for group in await self._redis.xinfo_groups(self._stream):
            if _text(group["name"]) != self._group:
                continue
            metrics.PENDING_ENTRIES.set(group["pending"])
            # Redis >= 7.0 counts the lag; it is unknown (nil) right after entries were deleted
            # from the middle of the stream: the gauge then keeps its value.
            if "lag" not in group:
                # Before 7.0 (make run's embedded Redis is 6.2): count the entries after the
                # group's last delivered one, up to _LAG_COUNT_CAP.
                after = await self._redis.xrange(
                    self._stream,
                    min=f"({_text(group['last-delivered-id'])}",
                    count=_LAG_COUNT_CAP,
                )
                metrics.CONSUMER_LAG.set(len(after or ()))
            elif group["lag"] is not None:
                metrics.CONSUMER_LAG.set(group["lag"])
        metrics.DEAD_LETTER_ENTRIES.set(await self._redis.xlen(self._settings.dead_letter_stream))

    async def claim_idle(self) -> int:
        """Take over entries idle past claim_idle_ms (their consumer died) and apply them."""
        claimed = 0
        start: bytes | str = "0-0"
        while not self._stopping.is_set():
            reply = await self._redis.xautoclaim(
                self._stream,
                self._group,
                self._name,
                min_idle_time=self._settings.claim_idle_ms,
                start_id=start,
                count=self._settings.batch_size,
            )
            start, entries = reply[0], [e for e in reply[1] if e[0] is not None]
            if entries:
                log.info(
                    "claimed %d usage entries idle past %d ms",
                    len(entries),
                    self._settings.claim_idle_ms,
                )
                claimed += len(entries)
                await self.handle(entries, redelivered=True)
            if start in (b"0-0", "0-0"):
                break
        await self._forget_stale_consumers()
        return claimed

    async def _forget_stale_consumers(self) -> None:
        for consumer in await self._redis.xinfo_consumers(self._stream, self._group):
            name = (
                consumer["name"].decode()
                if isinstance(consumer["name"], bytes)
                else consumer["name"]
            )
            if (
                name != self._name
                and consumer["pending"] == 0
                and consumer["idle"] > STALE_CONSUMER_MS
            ):
                await self._redis.xgroup_delconsumer(self._stream, self._group, name)

    async def trim(self) -> int:
        """XTRIM MINID below the oldest entry any group on the stream still needs."""
        keep_from: tuple[int, int] | None = None
        for group in await self._redis.xinfo_groups(self._stream):
            if group["pending"]:
                summary = await self._redis.xpending(self._stream, group["name"])
                needed = _id_key(summary["min"])
            else:  # everything delivered is acked: keep what comes after the last delivered
                ms, seq = _id_key(group["last-delivered-id"])
                needed = (ms, seq + 1)
            keep_from = needed if keep_from is None else min(keep_from, needed)
        if keep_from is None or keep_from <= (0, 1):
            return 0
        trimmed: int = await self._redis.xtrim(
            self._stream, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=False
        )
        if trimmed:
            log.info("trimmed %d applied entries from %s", trimmed, self._stream)
        return trimmed
