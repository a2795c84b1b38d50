"""A caller that goes away mid-stream: multimodal-svc closes its provider connection at once and
bills what was generated, once."""

from __future__ import annotations

import io

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from harness import Platform, running_platform
from PIL import Image
from waiting import eventually

from grpc_stubs.multimodal.v1 import multimodal_pb2, multimodal_pb2_grpc
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.usage_events import UsageEvent


@pytest.fixture
async def platform(database_url: str, redis_url: str, redis_prefix: str):
    async with running_platform(database_url, redis_url, redis_prefix) as p:
        yield p


def png(size: tuple[int, int], colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


async def usage_events(redis_url: str, stream: str) -> list[UsageEvent]:
    redis = aioredis.from_url(redis_url)
    try:
        return [UsageEvent.from_fields(fields) for _, fields in await redis.xrange(stream)]
    finally:
        await redis.aclose()


async def test_a_cancelled_stream_closes_upstream_and_bills_what_was_generated(
    platform: Platform, redis_url: str, redis_prefix: str
) -> None:
    await platform.grant("uma", 1_000_000)
    # 10,000 deltas 50 ms apart: left open, the provider would stream for over eight minutes.
    platform.openai.set_behaviour(chunks=10_000, token_delay_s=0.05)
    token = mint_service_token(platform.service_secret, "gateway")
    metadata = outgoing_metadata(token, user_id="uma", is_member=True, request_id="gone-1")
    request = multimodal_pb2.GenerateRequest(
        messages=[
            multimodal_pb2.ChatMessage(
                role="user",
                content=[
                    multimodal_pb2.ContentPart(text="describe"),
                    multimodal_pb2.ContentPart(
                        image=multimodal_pb2.ImageInput(data=png((16, 16), "blue"), detail="low")
                    ),
                ],
            )
        ],
        request_id="gone-1",
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.multimodal_port}") as channel:
        stub = multimodal_pb2_grpc.MultimodalServiceStub(channel)
        call = stub.GenerateStream(request, metadata=metadata)
        start = await call.read()
        assert start.HasField("start")
        received = []
        while len(received) < 3:
            message = await call.read()
            if message.HasField("delta") and message.delta.content:
                received.append(message.delta.content)
        call.cancel()

        # The provider sees its connection closed within the wait (its next delta is 50 ms away,
        # the rest of its reply minutes away), not when the reply would have ended.
        await platform.openai.wait_for(lambda: platform.openai.stats["streams_cancelled"] == 1)
        assert platform.openai.stats["streams_completed"] == 0

    stream = f"{redis_prefix}usage-events"

    async def published() -> list[UsageEvent]:
        return [e for e in await usage_events(redis_url, stream) if e.event_id == start.start.id]

    (event,) = await eventually(published, what="the usage event of the cancelled stream")
    assert (event.backend_type, event.outcome, event.mode, event.user_id) == (
        "multimodal",
        "client_disconnect",
        "member",
        "uma",
    )
    # No usage came from the provider: at least the deltas seen, far fewer than it would send.
    assert len(received) <= event.output_tokens < 10_000
    assert event.input_tokens > 0

    # billing-svc applied it, once.
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:

        async def billed() -> dict[str, int] | None:
            usage = (await client.get("/api/usage", headers=platform.auth("uma"))).json()
            by_type: dict[str, dict[str, int]] = usage["by_backend_type"]
            found = by_type.get("multimodal")
            return found if found and found["requests"] else None

        multimodal = await eventually(billed, what="billing-svc to apply the usage event")
    assert multimodal["requests"] == 1
    assert multimodal["output_tokens"] == event.output_tokens
    assert len(await published()) == 1
