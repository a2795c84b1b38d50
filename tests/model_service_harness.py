"""What the tests of every model service (text-svc, multimodal-svc, image-svc) share: a real
server started on port 0 from the service's own `create_server`, an insecure channel to it, the
gateway's metadata, and the usage events the service published on the test's own stream.

Each service's `tests/conftest.py` keeps what is its own: its stand-ins, its settings, its stub."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import grpc
import redis.asyncio as aioredis

from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.lifecycle import Service
from svc_common.usage_events import UsageEvent

SECRET = "test-service-token-secret"  # the service token secret every test server verifies
USER = "alice"

Server = TypeVar("Server", bound=Service)


class ModelServiceHarness(Generic[Server]):
    """One running model service; `metadata()` is what the gateway would send."""

    def __init__(self, server: Server, channel: grpc.aio.Channel, redis: aioredis.Redis) -> None:
        self.server = server
        self.settings: Any = server.settings
        self.channel = channel
        self.redis = redis
        self._seen = "0-0"

    def metadata(
        self, user: str = USER, *, member: bool = True, request_id: str = ""
    ) -> tuple[tuple[str, str], ...]:
        token = mint_service_token(SECRET, "gateway")
        return outgoing_metadata(token, user_id=user, is_member=member, request_id=request_id)

    async def next_usage_event(self, timeout_s: float = 5.0) -> UsageEvent:
        """The next usage event on this test's stream, waiting for it to be published."""
        stream = self.settings.usage_stream
        answer = await self.redis.xread({stream: self._seen}, count=1, block=int(timeout_s * 1000))
        assert answer, f"no usage event on {stream} within {timeout_s}s"
        [(_, [(entry_id, fields)])] = answer
        self._seen = entry_id.decode()
        return UsageEvent.from_fields(fields)

    async def usage_event_count(self) -> int:
        return int(await self.redis.xlen(self.settings.usage_stream))


class RunningServers(Generic[Server]):
    """The servers one test started, each with a channel to it; `aclose` (at the fixture's end)
    closes the channels and stops the servers with a one-second grace."""

    def __init__(self) -> None:
        self._running: list[tuple[Server, grpc.aio.Channel]] = []

    async def start(
        self, create_server: Callable[[Any], Server], settings: Any
    ) -> tuple[Server, grpc.aio.Channel]:
        server = create_server(settings)
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        self._running.append((server, channel))
        return server, channel

    async def aclose(self) -> None:
        for server, channel in self._running:
            await channel.close()
            await server.stop(1.0)
