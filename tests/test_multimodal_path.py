"""The multimodal route end to end: the official openai SDK → gateway → multimodal-svc → the
OpenAI, Anthropic and Ollama stand-ins, which decode each image and say what they received."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import asyncpg
import httpx
import openai
import pytest
from harness import USER_OPENAI_KEY, Platform, running_platform
from image_server import data_url, image_bytes, noisy_jpeg, serving_images
from waiting import eventually

PREFIX = "/api/multimodal-proxy/v1"
# (provider, model, mode, whether the config needs the stand-in's base URL)
PROVIDERS = {
    "openai": ("gpt-4o", "member"),
    "anthropic": ("claude-sonnet-4-20250514", "member"),
    "ollama": ("llava", "byok"),  # a local server: no member mode
}


def ask(url: str, detail: str = "low", text: str = "What is in this picture?") -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url, "detail": detail}},
            ],
        }
    ]


async def configure(platform: Platform, user: str, provider: str, **extra: Any) -> None:
    model, mode = PROVIDERS[provider]
    body: dict[str, Any] = {"provider": provider, "model": model, "mode": mode, **extra}
    if provider == "ollama":
        body["base_url"] = platform.ollama.base_url
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put(
            "/api/settings/llm/multimodal", json=body, headers=platform.auth(user)
        )
    assert response.status_code == 200, response.text


async def answer(platform: Platform, user: str, messages: list[Any], stream: bool) -> str:
    client = platform.client(user, prefix=PREFIX)
    if not stream:
        completion = await client.chat.completions.create(
            model="default", messages=messages, max_tokens=40
        )
        return completion.choices[0].message.content or ""
    chunks = await client.chat.completions.create(
        model="default",
        messages=messages,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    async for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    assert usage is not None and usage.prompt_tokens > 0
    return text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_a_data_url_image_reaches_each_provider(
    platform: Platform, provider: str, stream: bool
) -> None:
    await platform.grant("ana", 1_000_000)
    await configure(platform, "ana", provider)
    png = image_bytes("PNG", (64, 48), "red")
    text = await answer(platform, "ana", ask(data_url(png)), stream)
    assert "image:png:64x48:red" in text


@pytest.fixture
async def images():
    files = {
        "/blue.jpg": image_bytes("JPEG", (40, 30), "blue"),
        "/big.jpg": noisy_jpeg((300, 200)),
    }
    async with serving_images(files) as server:
        yield server


@pytest.fixture
async def fetching_platform(database_url: str, redis_url: str, redis_prefix: str, images):
    # The test's image server listens on 127.0.0.1, which only an allow-list lets through.
    settings = {"allowed_image_hosts": ["127.0.0.1"], "image_fetch_ca_file": images.ca_file}
    async with running_platform(
        database_url, redis_url, redis_prefix, multimodal=settings
    ) as platform:
        yield platform


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_an_https_image_is_fetched_once_and_sent_as_bytes(
    fetching_platform: Platform, images, provider: str, stream: bool
) -> None:
    platform = fetching_platform
    await platform.grant("ben", 1_000_000)
    await configure(platform, "ben", provider)
    text = await answer(platform, "ben", ask(f"{images.base_url}/blue.jpg"), stream)
    assert "image:jpeg:40x30:blue" in text
    assert len(images.requests) == 1
    sent = {k.lower() for k in images.requests[0]}
    assert not sent & {"authorization", "cookie", "x-api-key"}


async def test_an_image_too_big_for_anthropic_arrives_resized_under_5_mb(
    platform: Platform,
) -> None:
    await platform.grant("cy", 10_000_000)
    await configure(platform, "cy", "anthropic")
    photo = noisy_jpeg((4000, 3000), quality=95)
    assert len(photo) > 5 * 1024 * 1024  # Anthropic itself would refuse it
    text = await answer(platform, "cy", ask(data_url(photo, "image/jpeg")), stream=False)
    assert "image:jpeg:1568x1176" in text  # the stand-in refuses anything over 5 MB


async def test_refused_image_urls(fetching_platform: Platform, images) -> None:
    platform = fetching_platform
    await platform.grant("dee", 1_000_000)
    await configure(platform, "dee", "openai")
    port = images.base_url.rsplit(":", 1)[1]
    refused = [
        "http://example.com/cat.png",  # plain http is never fetched
        f"https://localhost:{port}/blue.jpg",  # loopback by name (only 127.0.0.1 is allowed)
        "https://[::1]/x.png",
        "https://169.254.169.254/latest/meta-data",
        "https://metadata.google.internal/x.png",
        "https://2130706433/x.png",  # 127.0.0.1 in decimal
        "https://0177.0.0.1/x.png",  # in octal
        "https://[::ffff:127.0.0.1]/x.png",  # IPv4-mapped
        "https://[64:ff9b::a9fe:a9fe]/x.png",  # NAT64 of 169.254.169.254
        "https://100.64.0.1/x.png",  # CGNAT
        "https://user:pw@example.com/x.png",
        "ftp://example.com/x.png",
        # An allowed host redirecting to a refused one: every hop is checked again.
        f"{images.base_url}/redirect?to=https://localhost:{port}/blue.jpg",
    ]
    client = platform.client("dee", prefix=PREFIX)
    for url in refused:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="default", messages=ask(url))
        message = caught.value.message
        assert "messages[0].content[1]" in message, (url, message)
        assert any(w in message for w in ("not allowed", "https", "credentials")), (url, message)
    assert platform.openai.stats.get("requests", 0) == 0 or all(
        r.path != "/v1/chat/completions" for r in platform.openai.requests
    )


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (a decompression bomb's signature)."""
    png = bytearray(image_bytes("PNG", (8, 8)))
    ihdr = struct.pack(">II", width, height) + bytes(png[24:29])
    png[16:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(png)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("data:image/png;base64,not*base64!", "base64"),
        (data_url(image_bytes("PNG")[:60]), "corrupt or truncated"),
        (data_url(_png_claiming(30000, 30000)), "pixels"),
        (data_url(_png_claiming(9000, 10)), "at most 8000"),
        (data_url(image_bytes("JPEG"), "image/png"), "bytes are a JPEG"),
        (data_url(b"hello, I am text", "image/png"), "not an image"),
        (data_url(image_bytes("BMP"), "image/bmp"), "unsupported image format"),
        ("data:image/png,rawbytes", "must be base64"),
    ],
    ids=["bad-base64", "truncated", "bomb", "too-wide", "mislabelled", "text", "bmp", "no-b64"],
)
async def test_bad_images_are_400s_that_say_why(platform: Platform, url: str, says: str) -> None:
    await platform.grant("eve", 1_000_000)
    await configure(platform, "eve", "anthropic")
    client = platform.client("eve", prefix=PREFIX)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="default", messages=ask(url))
    assert says in caught.value.message
    assert platform.anthropic.last_request is None  # no provider was called


async def test_member_charges_include_image_tokens_and_equal_settled_usage(
    platform: Platform, database_url: str
) -> None:
    await platform.grant("fay", 1_000_000)
    await configure(platform, "fay", "anthropic")
    png = image_bytes("PNG", (1500, 750), "green")  # 1500 x 750 / 750 = 1500 image tokens
    client = platform.client("fay", prefix=PREFIX)
    completion = await client.chat.completions.create(
        model="default", messages=ask(data_url(png)), max_tokens=10
    )
    assert "image:png:1500x750:green" in (completion.choices[0].message.content or "")
    assert completion.usage is not None and completion.usage.prompt_tokens >= 1500

    async def charge() -> asyncpg.Record | None:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchrow(
                "SELECT * FROM billing.ledger WHERE user_id = 'fay' AND kind = 'charge'"
            )
        finally:
            await conn.close()

    row = await eventually(charge, what="the charge")
    assert row["backend_type"] == "multimodal"
    assert row["input_tokens"] == completion.usage.prompt_tokens
    assert row["output_tokens"] == completion.usage.completion_tokens
    # claude-sonnet-4: 3 credits per 1M input, 15 per 1M output (micro-credits).
    expected = -(-row["input_tokens"] * 3_000_000 // 1_000_000) + -(
        -row["output_tokens"] * 15_000_000 // 1_000_000
    )
    assert row["cost_micros"] == expected
    # The hold covered the image tokens: 1500 of them alone cost 4500 micro-credits.
    assert row["hold_micros"] >= 1500 * 3 + 10 * 15
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        balance = (await http.get("/api/billing/balance", headers=platform.auth("fay"))).json()
    assert balance["balance_micros"] == 1_000_000 - expected


async def test_byok_sends_the_users_multimodal_key_and_moves_no_credits(
    platform: Platform,
) -> None:
    await platform.grant("gil", 1_000_000)
    await configure(platform, "gil", "openai", mode="byok")
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put(
            "/api/settings/llm/multimodal/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth("gil"),
        )
        assert response.status_code == 200, response.text
    text = await answer(
        platform, "gil", ask(data_url(image_bytes("WEBP"), "image/webp")), stream=True
    )
    assert "image:webp:64x48:red" in text
    assert platform.openai.last_request.key == USER_OPENAI_KEY

    async def listed() -> dict | None:
        async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
            response = await http.get(
                "/api/usage?backend_type=multimodal", headers=platform.auth("gil")
            )
        assert response.status_code == 200, response.text
        totals = response.json()["totals"]
        return totals[0] if totals else None

    total = await eventually(listed, what="BYOK multimodal usage listed")
    assert total["mode"] == "byok" and total["requests"] == 1
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        balance = (await http.get("/api/billing/balance", headers=platform.auth("gil"))).json()
    assert balance["balance_micros"] == 1_000_000


async def test_models_status_and_the_alias(platform: Platform) -> None:
    await configure(platform, "hal", "openai")
    auth = platform.auth("hal")
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        for prefix in (PREFIX, "/api/proxy/multimodal/v1"):
            models = await http.get(f"{prefix}/models", headers=auth)
            assert models.status_code == 200, models.text
            assert "gpt-4o" in [m["id"] for m in models.json()["data"]]
        status = await http.get("/api/proxy/multimodal/status", headers=auth)
        assert status.status_code == 200 and status.json()["ok"] is True
        # The text route still refuses images, and its body limit stays the smaller one.
        big = {"model": "x", "messages": [{"role": "user", "content": "x" * (5 * 2**20)}]}
        assert (
            await http.post("/api/text-proxy/v1/chat/completions", json=big, headers=auth)
        ).status_code == 413
        assert (
            await http.post(f"{PREFIX}/chat/completions", json=big, headers=auth)
        ).status_code != 413
