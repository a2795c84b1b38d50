"""Internal services call multimodal-svc directly over gRPC with a service token: the same config
resolution, image intake, hold and usage event as the gateway's callers."""

from __future__ import annotations

import io

import grpc
import pytest
from harness import Platform, running_platform
from PIL import Image

from grpc_stubs.multimodal.v1 import multimodal_pb2, multimodal_pb2_grpc
from svc_common.auth import mint_service_token, outgoing_metadata


@pytest.fixture
async def platform(database_url: str, redis_url: str, redis_prefix: str):
    async with running_platform(database_url, redis_url, redis_prefix) as p:
        yield p


def jpeg(size: tuple[int, int], colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def request(image: multimodal_pb2.ImageInput) -> multimodal_pb2.GenerateRequest:
    return multimodal_pb2.GenerateRequest(
        messages=[
            multimodal_pb2.ChatMessage(
                role="user",
                content=[
                    multimodal_pb2.ContentPart(text="describe"),
                    multimodal_pb2.ContentPart(image=image),
                ],
            )
        ],
        max_tokens=20,
    )


async def test_a_service_sends_image_bytes_and_gets_a_held_and_settled_answer(
    platform: Platform,
) -> None:
    await platform.grant("ivy", 1_000_000)
    token = mint_service_token(platform.service_secret, "gateway")
    metadata = outgoing_metadata(token, user_id="ivy", is_member=True, request_id="r-1")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.multimodal_port}") as channel:
        stub = multimodal_pb2_grpc.MultimodalServiceStub(channel)
        image = multimodal_pb2.ImageInput(data=jpeg((30, 20), "yellow"), detail="low")
        answer = await stub.Generate(request(image), metadata=metadata, timeout=20)
        assert "image:jpeg:30x20:yellow" in answer.content
        assert 0 <= answer.balance_micros < 1_000_000  # member mode: a hold was taken
        assert answer.usage.input_tokens > 0

        # Bad bytes are the caller's error, before any provider is called.
        calls = len(platform.openai.requests)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(
                request(multimodal_pb2.ImageInput(data=b"\xff\xd8\xffnot really")),
                metadata=metadata,
                timeout=20,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "corrupt or truncated" in (caught.value.details() or "")
        assert len(platform.openai.requests) == calls

        # Without a service token nothing is answered.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Generate(request(image), timeout=20)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
