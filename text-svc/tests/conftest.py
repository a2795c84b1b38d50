"""A real text-svc gRPC server on port 0, real provider stand-ins, the test's own Redis names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from provider_stand_ins import StandIn
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.usage_events import UsageEvent
from text_svc.config import Settings
from text_svc.server import TextServer, create_server

SECRET = "test-service-token-secret"
OPENAI_KEY = "sk-platform-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-platform-0123456789abcdef"
USER = "alice"


class Harness:
    """One running text-svc with its stand-ins; `metadata()` is what the gateway would send."""

    def __init__(
        self,
        server: TextServer,
        channel: grpc.aio.Channel,
        stand_ins: dict[str, StandIn],
        redis: aioredis.Redis,
    ) -> None:
        self.server = server
        self.settings = server.settings
        self.channel = channel
        self.stub = text_pb2_grpc.TextServiceStub(channel)
        self.openai = stand_ins["openai"]
        self.anthropic = stand_ins["anthropic"]
        self.ollama = stand_ins["ollama"]
        self.redis = redis
        self._seen = "0-0"

    def metadata(self, user: str = USER, *, request_id: str = "") -> tuple[tuple[str, str], ...]:
        token = mint_service_token(SECRET, "gateway")
        return outgoing_metadata(token, user_id=user, is_member=True, request_id=request_id)

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


def ask(text: str = "hello there", **fields: Any) -> text_pb2.GenerateRequest:
    return text_pb2.GenerateRequest(
        messages=[text_pb2.ChatMessage(role="user", content=text)], **fields
    )


@pytest.fixture
async def stand_ins() -> AsyncIterator[dict[str, StandIn]]:
    openai = StandIn("openai", keys={OPENAI_KEY}, chunks=5)
    anthropic = StandIn("anthropic", keys={ANTHROPIC_KEY}, chunks=5)
    ollama = StandIn("ollama", chunks=5)
    started = [await s.start() for s in (openai, anthropic, ollama)]
    yield {s.provider: s for s in started}
    for s in started:
        await s.stop()


StartTextSvc = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_text_svc(
    stand_ins: dict[str, StandIn], redis_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[StartTextSvc]:
    """Start text-svc with settings pointing at the stand-ins; keyword arguments override them."""
    running: list[tuple[TextServer, grpc.aio.Channel]] = []

    async def start(**overrides: Any) -> Harness:
        values: dict[str, Any] = {
            "environment": "test",
            "listen": "127.0.0.1:0",
            "service_token_secret": SECRET,
            "openai_base_url": stand_ins["openai"].sdk_base_url,
            "openai_api_key": OPENAI_KEY,
            "anthropic_base_url": stand_ins["anthropic"].sdk_base_url,
            "anthropic_api_key": ANTHROPIC_KEY,
            "ollama_base_url": stand_ins["ollama"].base_url,
            "vllm_base_url": stand_ins["ollama"].sdk_base_url,  # an OpenAI-compatible server
            "redis_url": redis_url,
            "usage_stream": f"{redis_prefix}usage-events",
            "settings_changed_channel": f"{redis_prefix}settings-changed",
            "default_provider": "openai",
            "default_model": "gpt-4o-mini",
            "upstream_timeout_s": 10.0,
            "max_retry_wait_s": 2.0,
        }
        values.update(overrides)
        server = create_server(Settings(**values))
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        running.append((server, channel))
        return Harness(server, channel, stand_ins, redis_client)

    yield start
    for server, channel in running:
        await channel.close()
        await server.stop(1.0)
