"""The usage event: one per model request, published by the model services, applied by billing-svc.

Events are Redis stream entries with flat string fields. `event_id` is the request id, so an
event delivered or published twice is applied once (billing's ledger is keyed by it).
`UsagePublisher` is how a model service sends them: queued without awaiting, sent in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

from svc_common.names import BACKEND_TYPES, MODES

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "CONSUMER_GROUP",
    "DEAD_LETTER_STREAM",
    "OUTCOMES",
    "STREAM",
    "InvalidUsageEvent",
    "UsageEvent",
    "UsagePublisher",
    "now_ms",
    "publish",
]

log = logging.getLogger(__name__)

STREAM = "usage-events"
DEAD_LETTER_STREAM = "usage-events-dead"
CONSUMER_GROUP = "billing"

# success: the call completed. upstream_error: the provider failed after billing some units.
# client_disconnect: the caller went away mid-stream (bill what was generated).
# error: failed before anything was generated (settles the hold to zero).
OUTCOMES = ("success", "upstream_error", "client_disconnect", "error")


class InvalidUsageEvent(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UsageEvent:
    event_id: str
    user_id: str
    backend_type: str
    provider: str
    model: str
    mode: str
    outcome: str
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    image_size: str = ""
    image_quality: str = ""
    hold_id: str = ""  # member mode: the hold this event settles
    lease_id: str = ""  # member mode, instead of a hold: the credit lease it is charged against
    # With lease_id: the worst case the holder debited from the lease before the call, what
    # billing charges if the route's price was removed since (as a hold's amount for a hold).
    # 0 in events queued before the field existed.
    lease_debit_micros: int = 0
    started_at_ms: int = 0
    ended_at_ms: int = 0

    def to_fields(self) -> dict[str, str]:
        # getattr over the slots, not dataclasses.asdict: asdict deep-copies and costs ~0.1 ms.
        return {name: str(getattr(self, name)) for name in _FIELD_NAMES}

    @classmethod
    def from_fields(cls, raw: dict[Any, Any]) -> UsageEvent:
        """Parse and validate a stream entry; raises InvalidUsageEvent saying what is wrong."""
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.default is not MISSING:  # optional field
                    continue
                raise InvalidUsageEvent(f"missing field {f.name!r}")
            value = data[f.name]
            if f.type == "int":
                try:
                    number = int(value)
                except ValueError:
                    raise InvalidUsageEvent(f"{f.name} is not an integer: {value[:40]!r}") from None
                if number < 0:
                    raise InvalidUsageEvent(f"{f.name} is negative")
                values[f.name] = number
            else:
                values[f.name] = value
        event = cls(**values)
        if not event.event_id or not event.user_id:
            raise InvalidUsageEvent("event_id and user_id must not be empty")
        if event.backend_type not in BACKEND_TYPES:
            raise InvalidUsageEvent(f"unknown backend_type {event.backend_type[:40]!r}")
        if event.mode not in MODES:
            raise InvalidUsageEvent(f"unknown mode {event.mode[:40]!r}")
        if event.outcome not in OUTCOMES:
            raise InvalidUsageEvent(f"unknown outcome {event.outcome[:40]!r}")
        return event


_FIELD_NAMES = tuple(f.name for f in fields(UsageEvent))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _append(target: Any, stream: str, event: UsageEvent) -> Any:
    """The one way an event becomes a stream entry (a client's or a pipeline's XADD). Never
    trimmed here: billing trims below its pending entries."""
    return target.xadd(stream, event.to_fields())


async def publish(redis: aioredis.Redis, event: UsageEvent, stream: str = STREAM) -> str:
    """Append one event to the usage stream now; returns the entry id."""
    entry_id = await _append(redis, stream, event)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


_PUBLISH_ATTEMPTS = 4
_BATCH = 500  # events per pipelined round trip


class UsagePublisher:
    """A model service's usage events, sent in the background: `submit` never awaits (it runs in
    `finally` blocks of tasks being cancelled); `drain` sends what is queued at shutdown.

    Without Redis (development) events are dropped: the service says so when it starts.
    """

    def __init__(
        self, redis: aioredis.Redis | None, stream: str = STREAM, *, linger_s: float = 0.0
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._linger_s = linger_s
        self._queue: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, event: UsageEvent) -> None:
        if self._redis is None:
            return
        self._queue.append(event)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._publish_queued(self._redis))

    async def _publish_queued(self, redis: aioredis.Redis) -> None:
        """Send queued events in batches: one pipelined round trip for all that arrived since the
        last, instead of a task and a round trip per request."""
        failures = 0
        while True:
            await self._wake.wait()
            if self._linger_s:
                # Let the events of requests ending about now join this round trip: a pipeline
                # costs far more CPU than the events in it (about 0.17 ms of text-svc's per
                # request at ~1,500 requests/s without the wait).
                await asyncio.sleep(self._linger_s)
            # The events that arrive while a batch is in flight go together in the next one, so
            # batches also grow with the load.
            self._wake.clear()
            while self._queue:
                batch = self._queue[:_BATCH]
                pipe = redis.pipeline(transaction=False)
                for event in batch:
                    _append(pipe, self._stream, event)
                try:
                    await pipe.execute()
                except Exception as err:
                    failures += 1
                    if failures < _PUBLISH_ATTEMPTS:
                        await asyncio.sleep(0.1 * 4**failures)
                        continue
                    for event in batch:
                        # Lost to billing unless replayed from this line (no key in it).
                        log.error(
                            "usage event not published (%s): %s",
                            type(err).__name__,
                            event.to_fields(),
                            extra={"event_id": event.event_id},
                        )
                failures = 0
                del self._queue[: len(batch)]
                if not self._queue:
                    self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait until every queued usage event is sent (shutdown), then stop the publisher."""
        if self._task is None:
            return
        if self._queue:
            self._idle.clear()
            self._wake.set()
            try:
                async with asyncio.timeout(timeout_s):
                    while self._queue:
                        await self._idle.wait()
                        self._idle.clear()
            except TimeoutError:
                log.error("%d usage events still unpublished at shutdown", len(self._queue))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
