"""Change messages: after every write, "<user_id>:<backend_type>" on a Redis pub/sub channel.

Model services cache resolved configs and drop the entry when the message arrives. Pub/sub is
fire-and-forget, so a subscriber that was disconnected misses messages: consumers keep a short TTL
on their cache as well. A failed publish is logged, not returned to the user (the write is done).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0


def change_message(user_id: str, backend_type: str) -> str:
    return f"{user_id}:{backend_type}"


class ChangePublisher:
    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self._redis = redis
        self.channel = channel

    async def publish(self, user_id: str, backend_type: str) -> None:
        try:
            await asyncio.wait_for(
                self._redis.publish(self.channel, change_message(user_id, backend_type)),
                PUBLISH_TIMEOUT_SECONDS,
            )
        except (RedisError, OSError, TimeoutError) as err:
            log.warning(
                "could not publish settings change on %s: %s (model services keep the old config "
                "until their cache expires)",
                self.channel,
                type(err).__name__,
                extra={"user_id": user_id},
            )

    async def close(self) -> None:
        await self._redis.aclose()
