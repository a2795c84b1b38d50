"""The usage event: one per model request, published by the model services, applied by billing-svc.

Events are Redis stream entries with flat string fields. `event_id` is the request id, so an
event delivered or published twice is applied once (billing's ledger is keyed by it).
"""

from __future__ import annotations

import time
from dataclasses import MISSING, dataclass, fields
from typing import Any

STREAM = "usage-events"
DEAD_LETTER_STREAM = "usage-events-dead"
CONSUMER_GROUP = "billing"

BACKEND_TYPES = ("text", "multimodal", "image")
MODES = ("member", "byok")
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


async def publish(redis: Any, event: UsageEvent, stream: str = STREAM) -> str:
    """Append the event to the usage stream. Never trimmed here: billing trims below its pending."""
    entry_id = await redis.xadd(stream, event.to_fields())
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
