"""A real image-svc gRPC server on port 0 against the image stand-ins, the test's own Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from image_svc.environment import Settings
from image_svc.server import ImageServer, create_server
from model_service_harness import SECRET, USER, ModelServiceHarness, RunningServers

from grpc_stubs.image.v1 import image_pb2_grpc
from provider_stand_ins import StandIn

OPENAI_KEY = "sk-platform-openai-images-0123456789"
STABILITY_KEY = "sk-platform-stability-0123456789ab"
__all__ = ["OPENAI_KEY", "SECRET", "STABILITY_KEY", "USER", "Harness", "StartImageSvc"]


class Harness(ModelServiceHarness[ImageServer]):
    """One running image-svc."""

    def __init__(
        self, server: ImageServer, channel: grpc.aio.Channel, redis: aioredis.Redis
    ) -> None:
        super().__init__(server, channel, redis)
        self.stub = image_pb2_grpc.ImageServiceStub(channel)


@pytest.fixture
async def stand_ins() -> AsyncIterator[dict[str, StandIn]]:
    started = [
        await StandIn("openai", keys={OPENAI_KEY}, image_steps=4).start(),
        await StandIn("stability", keys={STABILITY_KEY}, image_steps=4).start(),
        await StandIn("automatic1111", step_delay_s=0.05).start(),
        await StandIn("comfyui", step_delay_s=0.02).start(),
    ]
    yield {s.provider: s for s in started}
    for s in started:
        await s.stop()


StartImageSvc = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_image_svc(
    stand_ins: dict[str, StandIn], redis_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[StartImageSvc]:
    running: RunningServers[ImageServer] = RunningServers()

    async def start(**overrides: Any) -> Harness:
        values: dict[str, Any] = {
            "environment": "test",
            "service_token_secret": SECRET,
            "openai_base_url": stand_ins["openai"].sdk_base_url,
            "openai_api_key": OPENAI_KEY,
            "stability_base_url": stand_ins["stability"].base_url,
            "stability_api_key": STABILITY_KEY,
            "automatic1111_base_url": stand_ins["automatic1111"].base_url,
            "automatic1111_poll_s": 0.02,
            "comfyui_base_url": stand_ins["comfyui"].base_url,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "usage_stream": f"{redis_prefix}usage-events",
            "image_url_secret": "test-image-url-secret-0123456789",
            "member_mode": True,
            "upstream_timeout_s": 20.0,
        }
        values.update(overrides)
        server, channel = await running.start(create_server, Settings(**values))
        return Harness(server, channel, redis_client)

    yield start
    await running.aclose()
