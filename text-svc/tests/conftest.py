"""A real text-svc gRPC server on port 0, real provider stand-ins, the test's own Redis names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from model_service_harness import SECRET, USER, ModelServiceHarness, RunningServers

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from provider_stand_ins import StandIn
from text_svc.environment import Settings
from text_svc.server import TextServer, create_server

OPENAI_KEY = "sk-platform-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-platform-0123456789abcdef"
__all__ = ["ANTHROPIC_KEY", "OPENAI_KEY", "SECRET", "USER", "Harness", "StartTextSvc", "ask"]


class Harness(ModelServiceHarness[TextServer]):
    """One running text-svc with its stand-ins."""

    def __init__(
        self,
        server: TextServer,
        channel: grpc.aio.Channel,
        stand_ins: dict[str, StandIn],
        redis: aioredis.Redis,
    ) -> None:
        super().__init__(server, channel, redis)
        self.stub = text_pb2_grpc.TextServiceStub(channel)
        self.openai = stand_ins["openai"]
        self.anthropic = stand_ins["anthropic"]
        self.ollama = stand_ins["ollama"]


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
    running: RunningServers[TextServer] = RunningServers()

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
        server, channel = await running.start(create_server, Settings(**values))
        return Harness(server, channel, stand_ins, redis_client)

    yield start
    await running.aclose()
