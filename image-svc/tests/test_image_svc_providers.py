"""Each provider through image-svc over real gRPC against its stand-in: the images decode and
have the asked size, stream events come in order with previews where the provider sends them."""

from __future__ import annotations

import io
from typing import Any

import grpc
import pytest
from PIL import Image

from grpc_stubs.image.v1 import image_pb2

StartImageSvc = Any  # conftest's start_image_svc fixture

CASES = [
    ("openai", "gpt-image-2", "1024x1536", {}),
    ("stability", "core", "1344x768", {}),
    ("automatic1111", "v1-5-pruned-emaonly", "512x384", {"steps": 6}),
    ("comfyui", "sd_xl_base_1.0.safetensors", "512x512", {"steps": 6}),
]


def request(model: str, size: str, **fields: object) -> image_pb2.GenerateRequest:
    return image_pb2.GenerateRequest(
        model=model, prompt="a lighthouse at dusk", size=size, **fields
    )  # type: ignore[arg-type]


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(("provider", "model", "size", "extra"), CASES)
async def test_generate_returns_checked_images_of_the_asked_size(
    start_image_svc: StartImageSvc, provider: str, model: str, size: str, extra: dict[str, object]
) -> None:
    svc = await start_image_svc(default_provider=provider, default_model=model)
    reply = await svc.stub.Generate(
        request(model, size, n=2, **extra), metadata=svc.metadata(), timeout=30
    )
    assert len(reply.images) == 2
    for image in reply.images:
        picture = decoded(image.data)
        assert f"{picture.width}x{picture.height}" == size
        assert not picture.info.get("parameters")  # metadata stripped (A1111 writes it)
    event = await svc.next_usage_event()
    assert (event.backend_type, event.images, event.outcome) == ("image", 2, "success")
    assert event.image_size == size


@pytest.mark.parametrize(("provider", "model", "size", "extra"), CASES)
async def test_stream_progress_comes_in_order_before_the_image(
    start_image_svc: StartImageSvc, provider: str, model: str, size: str, extra: dict[str, object]
) -> None:
    svc = await start_image_svc(default_provider=provider, default_model=model)
    fields = {"partial_images": 2} if provider == "openai" else {}
    call = svc.stub.GenerateStream(
        request(model, size, **extra, **fields), metadata=svc.metadata(), timeout=30
    )
    kinds = []
    steps = []
    async for message in call:
        kind = message.WhichOneof("event")
        kinds.append(kind)
        if kind == "progress":
            steps.append(message.progress.step)
        if kind == "completed":
            picture = decoded(message.completed.image.data)
            assert f"{picture.width}x{picture.height}" == size
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert kinds.index("completed") > max(i for i, k in enumerate(kinds) if k == "progress")
    assert steps == sorted(steps) and steps
    if provider in ("automatic1111", "comfyui"):
        assert "preview" in kinds
    if provider == "openai":
        assert kinds.count("partial_image") == 2


async def test_comfyui_queue_position_falls_for_the_third_job(
    start_image_svc: StartImageSvc, stand_ins: dict
) -> None:
    svc = await start_image_svc(
        default_provider="comfyui", default_model="sd_xl_base_1.0.safetensors"
    )
    comfy = stand_ins["comfyui"]
    comfy.set_behaviour(hold_queue=True)
    ask = request("sd_xl_base_1.0.safetensors", "256x256", steps=3)
    first = svc.stub.GenerateStream(ask, metadata=svc.metadata(), timeout=30)
    second = svc.stub.GenerateStream(ask, metadata=svc.metadata(), timeout=30)
    await comfy.wait_for(lambda: sum(r.path == "/prompt" for r in comfy.requests) == 2)
    third = svc.stub.GenerateStream(ask, metadata=svc.metadata(), timeout=30)
    await comfy.wait_for(lambda: sum(r.path == "/prompt" for r in comfy.requests) == 3)
    comfy.set_behaviour(hold_queue=False)
    comfy.state.behaviour  # noqa: B018 - knobs take effect at once
    positions = [m.queued.position async for m in third if m.WhichOneof("event") == "queued"]
    assert positions[0] == 2 and positions[-1] < positions[0]
    for call in (first, second):
        assert [m async for m in call][-1].WhichOneof("event") == "finish"


async def test_a_cancelled_comfyui_job_is_interrupted_and_settled(
    start_image_svc: StartImageSvc, stand_ins: dict
) -> None:
    svc = await start_image_svc(
        default_provider="comfyui", default_model="sd_xl_base_1.0.safetensors"
    )
    comfy = stand_ins["comfyui"]
    comfy.set_behaviour(step_delay_s=0.2)
    call = svc.stub.GenerateStream(
        request("sd_xl_base_1.0.safetensors", "256x256", steps=50),
        metadata=svc.metadata(),
        timeout=30,
    )
    async for message in call:
        if message.WhichOneof("event") == "progress" and message.progress.step >= 1:
            break
    call.cancel()
    await comfy.wait_for(lambda: any(r.path == "/interrupt" for r in comfy.requests), 5)
    event = await svc.next_usage_event()
    assert event.outcome == "client_disconnect" and event.images == 0


async def test_a_cancelled_automatic1111_job_is_interrupted(
    start_image_svc: StartImageSvc, stand_ins: dict
) -> None:
    svc = await start_image_svc(
        default_provider="automatic1111", default_model="v1-5-pruned-emaonly"
    )
    a1111 = stand_ins["automatic1111"]
    a1111.set_behaviour(step_delay_s=0.2)
    call = svc.stub.GenerateStream(
        request("v1-5-pruned-emaonly", "256x256", steps=50), metadata=svc.metadata(), timeout=30
    )
    async for message in call:
        if message.WhichOneof("event") == "progress" and message.progress.step >= 1:
            break
    call.cancel()
    await a1111.wait_for(lambda: any(r.path == "/sdapi/v1/interrupt" for r in a1111.requests), 5)
    assert (await svc.next_usage_event()).outcome == "client_disconnect"


async def test_stability_content_filter_is_a_clear_refusal(
    start_image_svc: StartImageSvc, stand_ins: dict
) -> None:
    svc = await start_image_svc(default_provider="stability", default_model="core")
    stand_ins["stability"].set_behaviour(content_filtered=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(request("core", "1024x1024"), metadata=svc.metadata(), timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "CONTENT_FILTERED" in caught.value.details()


async def test_member_mode_off_is_403_saying_a_key_is_needed(
    start_image_svc: StartImageSvc,
) -> None:
    svc = await start_image_svc(member_mode=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(
            request("gpt-image-2", "1024x1024"), metadata=svc.metadata(), timeout=30
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "needs your own API key" in caught.value.details()


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"prompt": " "}, "prompt is empty"),
        ({"prompt": "x" * 32_001}, "at most 32000"),
        ({"size": "1000x1000"}, "not taken by gpt-image-2"),
        ({"n": 11}, "n must be between 1 and 10"),
        ({"quality": "ultra"}, "quality 'ultra' is not offered"),
        ({"output_format": "gif"}, "output_format 'gif' is not offered"),
        ({"partial_images": 4}, "partial_images must be between 0 and 3"),
    ],
)
async def test_bad_input_says_what_to_change(
    start_image_svc: StartImageSvc, fields: dict[str, object], says: str
) -> None:
    svc = await start_image_svc()
    base: dict[str, object] = {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(
            image_pb2.GenerateRequest(**{**base, **fields}), metadata=svc.metadata(), timeout=30
        )  # type: ignore[arg-type]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert says in caught.value.details()


async def test_a_signed_url_works_for_its_user_only(start_image_svc: StartImageSvc) -> None:
    svc = await start_image_svc()
    reply = await svc.stub.Generate(
        request("gpt-image-2", "1024x1024", response_format="url"),
        metadata=svc.metadata(),
        timeout=30,
    )
    url = reply.images[0].url
    path, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&"))
    ask = image_pb2.GetImageRequest(
        image_id=path.rsplit("/", 1)[1],
        expires=int(params["expires"]),
        signature=params["signature"],
    )
    got = await svc.stub.GetImage(ask, metadata=svc.metadata(), timeout=5)
    assert decoded(got.data).size == (1024, 1024)
    for bad, metadata in (
        (ask, svc.metadata("mallory")),
        (
            image_pb2.GetImageRequest(
                image_id=ask.image_id, expires=ask.expires + 1, signature=ask.signature
            ),
            svc.metadata(),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await svc.stub.GetImage(bad, metadata=metadata, timeout=5)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
