"""The Stability AI v2beta stand-in, driven with httpx multipart forms as real clients send them."""

import base64
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from provider_stand_ins import StandIn

pytestmark = pytest.mark.timeout(30)

KEY = "sk-stability-test-0123456789"
IMAGE = {"authorization": f"Bearer {KEY}", "accept": "image/*"}
JSON = {"authorization": f"Bearer {KEY}", "accept": "application/json"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        StandIn("stability", keys={KEY}, image_steps=4, step_delay_s=0.001) as stand_in,
        httpx.AsyncClient(base_url=stand_in.base_url) as client,
    ):
        client.stand_in = stand_in  # type: ignore[attr-defined]
        yield client


def form(**fields: str) -> dict[str, tuple[None, str]]:
    """Fields as multipart parts (httpx sends multipart/form-data only when given ``files``)."""
    return {name: (None, value) for name, value in fields.items()}


async def test_image_accept_returns_raw_bytes_with_finish_reason_and_seed(
    http: httpx.AsyncClient,
) -> None:
    reply = await http.post(
        "/v2beta/stable-image/generate/core",
        headers=IMAGE,
        files=form(prompt="a lighthouse", aspect_ratio="16:9", seed="42", output_format="jpeg"),
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/jpeg"
    assert reply.headers["finish-reason"] == "SUCCESS"
    assert reply.headers["seed"] == "42"
    assert len(reply.headers["x-request-id"]) == 32
    image = Image.open(io.BytesIO(reply.content))
    assert (image.format, image.size) == ("JPEG", (1344, 768))

    same = await http.post(
        "/v2beta/stable-image/generate/core",
        headers=IMAGE,
        files=form(prompt="a lighthouse", aspect_ratio="16:9", seed="42", output_format="jpeg"),
    )
    other_seed = await http.post(
        "/v2beta/stable-image/generate/core",
        headers=IMAGE,
        files=form(prompt="a lighthouse", aspect_ratio="16:9", seed="43", output_format="jpeg"),
    )
    assert same.content == reply.content
    assert other_seed.content != reply.content
    record = http.stand_in.requests[0]  # type: ignore[attr-defined]
    assert (record.key, record.model, record.images, record.outcome) == (
        KEY,
        "core",
        1,
        "completed",
    )


async def test_json_accept_and_sd3_model(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/v2beta/stable-image/generate/sd3",
        headers=JSON,
        files=form(prompt="a fox", model="sd3.5-medium", output_format="webp"),
    )
    body = reply.json()
    assert set(body) == {"image", "finish_reason", "seed"}
    assert body["finish_reason"] == "SUCCESS"
    assert 0 < body["seed"] <= 4_294_967_294  # seed 0 means random: the reply names the one used
    image = Image.open(io.BytesIO(base64.b64decode(body["image"])))
    assert (image.format, image.size) == ("WEBP", (1024, 1024))
    assert http.stand_in.last_request.model == "sd3.5-medium"  # type: ignore[attr-defined]


async def test_content_filtered_answers_a_blurred_image(http: httpx.AsyncClient) -> None:
    fields = form(prompt="something", seed="7")
    clear = await http.post("/v2beta/stable-image/generate/ultra", headers=IMAGE, files=fields)
    http.stand_in.set_behaviour(content_filtered=True)  # type: ignore[attr-defined]
    blurred = await http.post("/v2beta/stable-image/generate/ultra", headers=IMAGE, files=fields)
    assert blurred.status_code == 200
    assert blurred.headers["finish-reason"] == "CONTENT_FILTERED"
    assert blurred.content != clear.content
    assert Image.open(io.BytesIO(blurred.content)).size == (1024, 1024)
    as_json = await http.post("/v2beta/stable-image/generate/ultra", headers=JSON, files=fields)
    assert as_json.json()["finish_reason"] == "CONTENT_FILTERED"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"negative_prompt": "x"}, "prompt: is required"),
        ({"prompt": "x" * 10_001}, "prompt: must be at most 10000 characters"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio: must be one of"),
        ({"prompt": "x", "seed": "4294967295"}, "seed: must be an integer"),
        ({"prompt": "x", "output_format": "gif"}, "output_format: must be one of"),
    ],
)
async def test_bad_forms_get_400_with_stability_error_body(
    http: httpx.AsyncClient, fields: dict[str, str], message: str
) -> None:
    reply = await http.post(
        "/v2beta/stable-image/generate/core", headers=IMAGE, files=form(**fields)
    )
    assert reply.status_code == 400
    body = reply.json()
    assert set(body) == {"id", "name", "errors"}
    assert body["name"] == "bad_request"
    assert body["errors"][0].startswith(message)


async def test_a_json_body_is_refused_as_not_multipart(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/v2beta/stable-image/generate/core", headers=IMAGE, json={"prompt": "x"}
    )
    assert reply.status_code == 400
    assert reply.json()["errors"] == ["content-type: must be multipart/form-data"]


async def test_wrong_key_and_forced_errors(http: httpx.AsyncClient) -> None:
    unauthorized = await http.post(
        "/v2beta/stable-image/generate/core",
        headers={"authorization": "Bearer sk-nope", "accept": "image/*"},
        files=form(prompt="x"),
    )
    assert unauthorized.status_code == 401
    assert unauthorized.json()["name"] == "unauthorized"
    stand_in = http.stand_in  # type: ignore[attr-defined]
    for status, name in [
        (403, "content_moderation"),
        (413, "payload_too_large"),
        (429, "rate_limit_exceeded"),
        (500, "internal_error"),
    ]:
        stand_in.set_behaviour(error_status=status)
        reply = await http.post(
            "/v2beta/stable-image/generate/core", headers=IMAGE, files=form(prompt="x")
        )
        assert (reply.status_code, reply.json()["name"]) == (status, name)
    assert [record.key for record in stand_in.requests][:2] == ["sk-nope", KEY]


async def test_disconnect_knob_drops_the_connection(http: httpx.AsyncClient) -> None:
    http.stand_in.set_behaviour(disconnect_after_steps=2)  # type: ignore[attr-defined]
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/v2beta/stable-image/generate/core", headers=IMAGE, files=form(prompt="x"))
    assert http.stand_in.stats["disconnected"] == 1  # type: ignore[attr-defined]
