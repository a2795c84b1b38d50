"""OpenAI's images API on the OpenAI stand-in, driven by the official ``openai`` SDK."""

import base64
import io
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from PIL import Image

from provider_stand_ins import StandIn

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-images-0123456789abcdef"


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    async with StandIn("openai", keys={KEY}, image_steps=6, step_delay_s=0.001) as running:
        yield running


def client(stand_in: StandIn, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stand_in.sdk_base_url, api_key=key, max_retries=0)


def decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def test_gpt_image_returns_images_of_the_asked_size_with_token_usage(
    stand_in: StandIn,
) -> None:
    async with client(stand_in) as sdk:
        result = await sdk.images.generate(
            model="gpt-image-2",
            prompt="a lighthouse at dusk",
            size="512x768",
            quality="high",
            output_format="webp",
            n=2,
        )
        again = await sdk.images.generate(
            model="gpt-image-2", prompt="a lighthouse at dusk", size="512x768", quality="high",
            output_format="webp", n=1,
        )  # fmt: skip
        other = await sdk.images.generate(
            model="gpt-image-2", prompt="a lighthouse at dawn", size="512x768", quality="high",
            output_format="webp", n=1,
        )  # fmt: skip

    assert result.data is not None and len(result.data) == 2
    images = [decode(item.b64_json) for item in result.data]
    assert [(image.format, image.size) for image in images] == [("WEBP", (512, 768))] * 2
    assert result.data[0].b64_json != result.data[1].b64_json  # each image its own seed
    assert again.data is not None and other.data is not None
    assert again.data[0].b64_json == result.data[0].b64_json  # deterministic
    assert other.data[0].b64_json != result.data[0].b64_json  # pixels follow the prompt
    assert (result.size, result.quality, result.output_format, result.background) == (
        "512x768",
        "high",
        "webp",
        "opaque",
    )
    assert result.usage is not None
    per_image = round(4160 * 512 * 768 / 1024**2)
    assert result.usage.input_tokens == 4  # words of the prompt
    assert result.usage.input_tokens_details.text_tokens == 4
    assert result.usage.output_tokens == 2 * per_image
    assert result.usage.total_tokens == 4 + 2 * per_image
    record = stand_in.requests[0]
    assert (record.key, record.model, record.path, record.images, record.outcome) == (
        KEY,
        "gpt-image-2",
        "/v1/images/generations",
        2,
        "completed",
    )


async def test_table_sizes_use_the_published_token_counts(stand_in: StandIn) -> None:
    async with client(stand_in) as sdk:
        result = await sdk.images.generate(
            model="gpt-image-2", prompt="x", size="1536x1024", quality="low"
        )
    assert result.usage is not None and result.usage.output_tokens == 400
    assert decode(result.data[0].b64_json if result.data else None).size == (1536, 1024)


async def test_stream_sends_partial_images_then_completed_with_usage(stand_in: StandIn) -> None:
    async with client(stand_in) as sdk:
        stream = await sdk.images.generate(
            model="gpt-image-2",
            prompt="a red fox",
            size="256x256",
            stream=True,
            partial_images=2,
        )
        events = [event async for event in stream]

    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    *partials, completed = events
    assert [event.partial_image_index for event in partials] == [0, 1]  # type: ignore[union-attr]
    for event in events:
        assert decode(event.b64_json).size == (256, 256)
        assert (event.size, event.quality, event.output_format) == ("256x256", "medium", "png")
    assert completed.type == "image_generation.completed"
    assert completed.usage.output_tokens == round(1056 * 256 * 256 / 1024**2)
    assert partials[0].b64_json != partials[1].b64_json != completed.b64_json
    assert stand_in.stats["streams_completed"] == 1


async def test_raw_stream_frames_are_named_events(stand_in: StandIn) -> None:
    body = {"model": "gpt-image-2", "prompt": "p", "size": "256x256", "stream": True}
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        reply = await http.post(
            "/v1/images/generations", json=body, headers={"authorization": f"Bearer {KEY}"}
        )
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.text.startswith("event: image_generation.completed\ndata: {")
    assert reply.text.endswith("\n\n")


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"size": "1000x1000"}, "size"),  # not divisible by 16
        ({"size": "3840x960"}, "size"),  # 4:1
        ({"size": "4096x2160"}, "size"),  # too large
        ({"quality": "ultra"}, "quality"),
        ({"n": 11}, "n"),
        ({"partial_images": 4, "stream": True}, "partial_images"),
        ({"output_format": "gif"}, "output_format"),
        ({"response_format": "url"}, "response_format"),
        ({"prompt": ""}, "prompt"),
    ],
)
async def test_invalid_requests_get_openai_400s(
    stand_in: StandIn, changes: dict[str, object], param: str
) -> None:
    body = {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024", **changes}
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        reply = await http.post(
            "/v1/images/generations", json=body, headers={"authorization": f"Bearer {KEY}"}
        )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]


async def test_wrong_key_and_moderation_are_refused_like_openai(stand_in: StandIn) -> None:
    async with client(stand_in, key="sk-wrong-key-000000000") as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.images.generate(model="gpt-image-2", prompt="p", size="256x256")
    stand_in.set_behaviour(content_filtered=True)
    async with client(stand_in) as sdk:
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.images.generate(model="gpt-image-2", prompt="p", size="256x256")
    assert refused.value.code == "moderation_blocked"
    assert [record.key for record in stand_in.requests] == ["sk-wrong-key-000000000", KEY]


async def test_forced_errors_and_mid_stream_error(stand_in: StandIn) -> None:
    stand_in.set_behaviour(error_status=429, fail_times=1)
    async with client(stand_in) as sdk:
        with pytest.raises(openai.RateLimitError):
            await sdk.images.generate(model="gpt-image-2", prompt="p", size="256x256")
        stand_in.set_behaviour(error_after_steps=3)
        stream = await sdk.images.generate(
            model="gpt-image-2", prompt="p", size="256x256", stream=True, partial_images=3
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    assert stand_in.stats["stream_error"] == 1


async def test_client_leaving_a_stream_is_seen_as_cancelled(stand_in: StandIn) -> None:
    stand_in.set_behaviour(image_steps=1000, step_delay_s=0.005)
    async with client(stand_in) as sdk:
        stream = await sdk.images.generate(
            model="gpt-image-2", prompt="p", size="256x256", stream=True, partial_images=3
        )
        async for _ in stream:
            break
        await stream.close()
    await stand_in.wait_for(lambda: stand_in.stats["streams_cancelled"] == 1)


async def test_dall_e_shapes_answer_a_url_served_by_the_stand_in(stand_in: StandIn) -> None:
    async with client(stand_in) as sdk:
        result = await sdk.images.generate(model="dall-e-3", prompt="a cat", size="1024x1792")
        with pytest.raises(openai.BadRequestError):
            await sdk.images.generate(model="dall-e-3", prompt="a cat", n=2)
        b64 = await sdk.images.generate(
            model="dall-e-2", prompt="a cat", size="256x256", response_format="b64_json"
        )
    assert result.data is not None and result.data[0].url is not None
    assert result.data[0].revised_prompt == "a cat"
    assert result.usage is None
    async with httpx.AsyncClient() as http:
        image = await http.get(result.data[0].url)
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (1024, 1792)
    assert b64.data is not None
    assert decode(b64.data[0].b64_json).size == (256, 256)
