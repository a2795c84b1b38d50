"""The publishing side of the settings-changed contract (`svc_common.settings_changes`): after
every write, the change on the Redis pub/sub channel. A failed publish is logged, not returned to
the user (the write is done); subscribers' TTL bounds how long they keep the old config.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from svc_common import settings_changes

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0


class ChangePublisher:
    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self._redis = redis
        self.channel = channel

    async def publish(self, user_id: str, backend_type: str) -> None:
        try:
            await asyncio.wait_for(
                self._redis.publish(self.channel, settings_changes.encode(user_id, backend_type)),
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
