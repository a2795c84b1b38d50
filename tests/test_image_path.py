"""The image route end to end: the official openai SDK → gateway → image-svc → the OpenAI,
Stability, Automatic1111 and ComfyUI stand-ins, which draw real images step by step."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from harness import USER_OPENAI_KEY, Platform, running_platform
from PIL import Image
from waiting import eventually

PREFIX = "/api/image-proxy/v1"
# provider -> (model, a size it takes, extra body fields)
PROVIDERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "openai": ("gpt-image-2", "1024x1536", {}),
    "stability": ("core", "1344x768", {}),
    "automatic1111": ("v1-5-pruned-emaonly", "512x384", {"steps": 6}),
    "comfyui": ("sd_xl_base_1.0.safetensors", "512x512", {"steps": 6}),
}
PREVIEWS = ("automatic1111", "comfyui")  # the providers that send in-progress images


@pytest.fixture
async def images_on(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Platform]:
    """The platform with image member mode switched on (IMAGE_SVC_MEMBER_MODE=true)."""
    async with running_platform(
        database_url, redis_url, redis_prefix, image={"member_mode": True}
    ) as p:
        yield p


async def configure(platform: Platform, user: str, provider: str, mode: str = "member") -> None:
    model = PROVIDERS[provider][0]
    body = {"provider": provider, "model": model, "mode": mode}
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put("/api/settings/llm/image", json=body, headers=platform.auth(user))
    assert response.status_code == 200, response.text


def decoded(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


async def balance(platform: Platform, user: str) -> int:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.get("/api/billing/balance", headers=platform.auth(user))
    return int(response.json()["balance_micros"])


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_each_provider_returns_an_image_of_the_asked_size(
    images_on: Platform, provider: str
) -> None:
    await images_on.grant("ana", 50_000_000)
    await configure(images_on, "ana", provider)
    model, size, extra = PROVIDERS[provider]
    client = images_on.client("ana", prefix=PREFIX)
    answer = await client.images.generate(
        model=model,
        prompt="a lighthouse at dusk",
        size=size,
        extra_body=extra,  # type: ignore[arg-type]
    )
    assert len(answer.data) == 1
    picture = decoded(answer.data[0].b64_json or "")
    assert f"{picture.width}x{picture.height}" == size
    if provider == "openai":
        assert answer.usage is not None and answer.usage.output_tokens > 0


@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_each_provider_streams_progress_in_order_before_the_image(
    images_on: Platform, provider: str
) -> None:
    await images_on.grant("ana", 50_000_000)
    await configure(images_on, "ana", provider)
    model, size, extra = PROVIDERS[provider]
    client = images_on.client("ana", prefix=PREFIX)
    fields = {"partial_images": 2} if provider == "openai" else {}
    # Local servers report progress while a step runs: give each step time to be seen.
    for local in (images_on.automatic1111, images_on.comfyui):
        assert local is not None
        local.set_behaviour(step_delay_s=0.05)
    stream = await client.images.generate(
        model=model,
        prompt="a lighthouse at dusk",
        size=size,  # type: ignore[arg-type]
        stream=True,
        extra_body=extra,
        **fields,  # type: ignore[arg-type]
    )
    kinds: list[str] = []
    steps: list[int] = []
    async for event in stream:
        kinds.append(event.type)
        if event.type == "image_generation.progress":
            steps.append(event.step)  # type: ignore[attr-defined]
        if event.type == "image_generation.preview":
            assert decoded(event.b64_json or "").width > 0
        if event.type == "image_generation.completed":
            picture = decoded(event.b64_json)
            assert f"{picture.width}x{picture.height}" == size
            assert event.usage is not None
    assert kinds[-1] == "image_generation.completed"
    assert steps and steps == sorted(steps)
    last_progress = max(i for i, k in enumerate(kinds) if k == "image_generation.progress")
    assert last_progress < kinds.index("image_generation.completed")
    if provider in PREVIEWS:
        assert "image_generation.preview" in kinds
    if provider == "openai":
        assert kinds.count("image_generation.partial_image") == 2


async def test_the_third_comfyui_job_sees_its_queue_position_fall(images_on: Platform) -> None:
    await images_on.grant("ana", 50_000_000)
    await configure(images_on, "ana", "comfyui")
    comfy = images_on.comfyui
    assert comfy is not None
    comfy.set_behaviour(hold_queue=True, step_delay_s=0.02)
    client = images_on.client("ana", prefix=PREFIX)
    model = PROVIDERS["comfyui"][0]

    async def job() -> list[Any]:
        stream = await client.images.generate(
            model=model,
            prompt="a queue",
            size="256x256",  # type: ignore[arg-type]
            stream=True,
            extra_body={"steps": 3},
        )
        return [event async for event in stream]

    first = asyncio.create_task(job())
    second = asyncio.create_task(job())
    await comfy.wait_for(lambda: sum(r.path == "/prompt" for r in comfy.requests) == 2, 10)
    third = asyncio.create_task(job())
    await comfy.wait_for(lambda: sum(r.path == "/prompt" for r in comfy.requests) == 3, 10)
    comfy.set_behaviour(hold_queue=False)
    events = await third
    positions = [e.position for e in events if e.type == "image_generation.queued"]
    assert positions[0] == 2 and positions[-1] < positions[0]
    assert events[-1].type == "image_generation.completed"
    for done in await asyncio.gather(first, second):
        assert done[-1].type == "image_generation.completed"


async def test_member_mode_off_is_a_403_that_says_a_key_is_needed(platform: Platform) -> None:
    await platform.grant("ana", 50_000_000)
    client = platform.client("ana", prefix=PREFIX)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.images.generate(model="gpt-image-2", prompt="a cat", size="1024x1024")
    assert "needs your own API key" in caught.value.message


async def test_byok_sends_the_users_key_and_moves_no_credits(platform: Platform) -> None:
    await platform.grant("bo", 5_000_000)
    await configure(platform, "bo", "openai", mode="byok")
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put(
            "/api/settings/llm/image/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth("bo"),
        )
    assert response.status_code == 200, response.text
    client = platform.client("bo", prefix=PREFIX)
    answer = await client.images.generate(model="gpt-image-2", prompt="a cat", size="1024x1024")
    assert decoded(answer.data[0].b64_json or "").size == (1024, 1024)
    image_calls = [r for r in platform.openai.requests if r.path.endswith("/images/generations")]
    assert image_calls and image_calls[-1].key == USER_OPENAI_KEY
    assert await balance(platform, "bo") == 5_000_000


BAD_INPUTS = [
    pytest.param({"prompt": ""}, "prompt", "prompt is empty", id="empty-prompt"),
    pytest.param({"prompt": "x" * 32_001}, "prompt", "at most 32000", id="oversized-prompt"),
    pytest.param({"size": "1000x1000"}, "size", "not taken by gpt-image-2", id="size"),
    pytest.param({"n": 11}, "n", "n must be between 1 and 10", id="n-above"),
    pytest.param({"n": 0}, "n", "at least 1", id="n-below"),
    pytest.param({"quality": "ultra"}, "quality", "quality 'ultra' is not offered", id="quality"),
    pytest.param(
        {"output_format": "gif"}, "output_format", "output_format 'gif' is not offered", id="format"
    ),
    pytest.param({"model": "dall-e-3"}, "model", "use one of gpt-image-2", id="unknown-model"),
    pytest.param({"prompt": None}, "prompt", "missing required parameter", id="no-prompt"),
    pytest.param({"n": "two"}, "n", "expected an integer", id="n-type"),
]


@pytest.mark.parametrize(("fields", "param", "says"), BAD_INPUTS)
async def test_bad_input_is_a_400_that_says_what_to_change(
    images_on: Platform, fields: dict[str, Any], param: str, says: str
) -> None:
    await images_on.grant("ana", 50_000_000)
    await configure(images_on, "ana", "openai")
    body = {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024", **fields}
    body = {k: v for k, v in body.items() if v is not None}
    async with httpx.AsyncClient(base_url=images_on.gateway_url, timeout=30) as http:
        for prefix in (PREFIX, "/api/proxy/image/v1"):
            response = await http.post(
                f"{prefix}/images/generations", json=body, headers=images_on.auth("ana")
            )
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert says in error["message"]
            assert error["param"] == param
    assert await balance(images_on, "ana") == 50_000_000


GPT_IMAGE_2 = {"input": 5, "output": 40}  # micro-credits per token (billing's price table)
STABILITY_CORE = 30_000  # micro-credits per image


async def test_member_holds_and_charges_are_exact_for_n_images(images_on: Platform) -> None:
    grant = 50_000_000
    await images_on.grant("ana", grant)
    await configure(images_on, "ana", "openai")
    body = {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024", "quality": "low"}
    async with httpx.AsyncClient(base_url=images_on.gateway_url, timeout=30) as http:
        response = await http.post(
            f"{PREFIX}/images/generations", json={**body, "n": 2}, headers=images_on.auth("ana")
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["data"]) == 2
    # The hold: the prompt's 5 bytes as input tokens, 2 x 272 output tokens (low, 1024x1024).
    hold = 5 * GPT_IMAGE_2["input"] + 2 * 272 * GPT_IMAGE_2["output"]
    assert int(response.headers["x-credits-remaining"]) == grant - hold
    usage = answer["usage"]
    charge = (
        usage["input_tokens"] * GPT_IMAGE_2["input"]
        + usage["output_tokens"] * GPT_IMAGE_2["output"]
    )
    assert 0 < charge
    await eventually(
        lambda: _balance_is(images_on, "ana", grant - charge), what="the GPT-image charge"
    )

    # Per image: n Stability images hold and cost n times the model's price, streamed too.
    await configure(images_on, "ana", "stability")
    before = grant - charge
    client = images_on.client("ana", prefix=PREFIX)
    raw = await client.images.with_raw_response.generate(
        model="core", prompt="a cat", size="1024x1024", n=2, stream=True
    )
    assert int(raw.headers["x-credits-remaining"]) == before - 2 * STABILITY_CORE
    events = raw.parse()
    completed = [e async for e in events if e.type == "image_generation.completed"]
    assert len(completed) == 2
    await eventually(
        lambda: _balance_is(images_on, "ana", before - 2 * STABILITY_CORE),
        what="the Stability charge",
    )


async def _balance_is(platform: Platform, user: str, expected: int) -> bool:
    return await balance(platform, user) == expected


async def test_a_client_that_disconnects_interrupts_the_job_and_the_hold_settles(
    images_on: Platform,
) -> None:
    grant = 50_000_000
    await images_on.grant("ana", grant)
    await configure(images_on, "ana", "comfyui")
    comfy = images_on.comfyui
    assert comfy is not None
    comfy.set_behaviour(step_delay_s=0.2)
    body = {"prompt": "a slow one", "size": "512x512", "steps": 50, "stream": True}
    async with httpx.AsyncClient(base_url=images_on.gateway_url, timeout=30) as http:
        async with http.stream(
            "POST", f"{PREFIX}/images/generations", json=body, headers=images_on.auth("ana")
        ) as response:
            assert response.status_code == 200
            assert int(response.headers["x-credits-remaining"]) < grant  # held
            async for line in response.aiter_lines():
                if line == "event: image_generation.progress":
                    break  # leave mid-job
    await comfy.wait_for(lambda: any(r.path == "/interrupt" for r in comfy.requests), 10)
    # Nothing was produced: the hold settles to no charge and the credits come back.
    await eventually(lambda: _balance_is(images_on, "ana", grant), what="the hold to settle")


async def test_a_signed_url_works_for_its_user_until_it_expires(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        image={"member_mode": True, "image_url_ttl_s": 3},
    ) as platform:
        await platform.grant("ana", 50_000_000)
        await configure(platform, "ana", "openai")
        client = platform.client("ana", prefix=PREFIX)
        answer = await client.images.generate(
            model="gpt-image-2", prompt="a cat", size="1024x1024", response_format="url"
        )
        url = answer.data[0].url or ""
        assert url.startswith(platform.gateway_url + PREFIX + "/images/files/")
        async with httpx.AsyncClient(timeout=10) as http:
            mine = await http.get(url, headers=platform.auth("ana"))
            assert mine.status_code == 200, mine.text
            assert Image.open(io.BytesIO(mine.content)).size == (1024, 1024)
            assert (await http.get(url, headers=platform.auth("mallory"))).status_code == 403
            tampered = url.replace("signature=", "signature=0")
            assert (await http.get(tampered, headers=platform.auth("ana"))).status_code == 403
            expires = int(url.split("expires=")[1].split("&")[0])
            later = url.replace(f"expires={expires}", f"expires={expires + 3600}")
            assert (await http.get(later, headers=platform.auth("ana"))).status_code == 403
            assert (await http.get(url)).status_code == 401  # never without the user's token

            async def expired() -> bool:
                return (await http.get(url, headers=platform.auth("ana"))).status_code == 404

            await eventually(expired, within_s=10, what="the link to expire")
