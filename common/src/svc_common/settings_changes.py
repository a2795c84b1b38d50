"""The `settings-changed` contract between settings-svc (publisher) and the model services
(subscribers): the channel, the message, and the subscriber's watch loop.

After every write settings-svc publishes "<user_id>:<backend_type>" on a Redis pub/sub channel;
a model service drops that user's cached config of that backend type. Pub/sub is
fire-and-forget, so a subscriber that was disconnected misses messages: subscribers drop their
whole cache on every (re)subscription and keep a short TTL as well.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from svc_common.names import BACKEND_TYPES

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "CHANNEL",
    "ChangeListener",
    "SettingsChange",
    "decode",
    "encode",
    "watch",
]

log = logging.getLogger(__name__)

CHANNEL = "settings-changed"


@dataclass(frozen=True, slots=True)
class SettingsChange:
    user_id: str
    backend_type: str


def encode(user_id: str, backend_type: str) -> str:
    return f"{user_id}:{backend_type}"


def decode(message: str | bytes) -> SettingsChange | None:
    """The change a message announces; None for anything that is not one (ignored)."""
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    # rpartition: a user id may contain ':', a backend type never does.
    user_id, _, backend_type = text.rpartition(":")
    if not user_id or backend_type not in BACKEND_TYPES:
        return None
    return SettingsChange(user_id, backend_type)


class ChangeListener(Protocol):
    def invalidate(self, message: str) -> None:
        """A message arrived on the channel (decode it with `decode`)."""
        ...

    def clear(self) -> None:
        """(Re)subscribed: messages may have been missed, drop everything."""
        ...


async def watch(redis: aioredis.Redis, channel: str, listener: ChangeListener) -> None:
    """Pass settings changes on to the listener; runs until cancelled, resubscribing after
    any failure with a growing delay (0.1 s up to 5 s)."""
    delay = 0.1
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                kind = message.get("type")
                if kind == "subscribe":
                    listener.clear()
                    delay = 0.1
                elif kind == "message":
                    data = message.get("data")
                    listener.invalidate(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning(
                "settings-change subscription lost (%s); resubscribing in %.1fs",
                type(err).__name__,
                delay,
            )
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
