"""The chat stand-ins look at images as the providers do: each decoded and echoed as
image:<format>:<W>x<H>:<colour>, and refused with the provider's own error where it refuses."""

from __future__ import annotations

import base64
import io
import os

import anthropic
import httpx
import openai
import pytest
from PIL import Image

from provider_stand_ins import StandIn

pytestmark = pytest.mark.timeout(30)


def png(size: tuple[int, int] = (32, 16), colour: str = "blue") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_openai_sees_a_data_url_image() -> None:
    async with StandIn("openai", keys={"sk-test"}) as stand_in:
        client = openai.AsyncOpenAI(base_url=stand_in.sdk_base_url, api_key="sk-test")
        answer = await client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{b64(png())}"},
                        },
                    ],
                }
            ],
        )
        await client.close()
    assert "image:png:32x16:blue" in (answer.choices[0].message.content or "")
    assert answer.usage is not None and answer.usage.prompt_tokens >= 1 + 32 * 16 // 750


async def test_anthropic_refuses_an_image_over_5_mb_with_its_error_text() -> None:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1800, 1200), os.urandom(1800 * 1200 * 3)).save(buffer, "PNG")
    big = buffer.getvalue()
    assert len(big) > 5 * 1024 * 1024
    async with StandIn("anthropic", keys={"sk-ant-test"}) as stand_in:
        client = anthropic.AsyncAnthropic(
            base_url=stand_in.sdk_base_url, api_key="sk-ant-test", max_retries=0
        )
        image = {"type": "base64", "media_type": "image/png", "data": b64(big)}
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model="claude-sonnet-4-20250514",
                max_tokens=10,
                messages=[{"role": "user", "content": [{"type": "image", "source": image}]}],
            )
        ok = await client.messages.create(
            model="claude-sonnet-4-20250514",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {**image, "data": b64(png((20, 10), "red"))},
                        }
                    ],
                }
            ],
        )
        await client.close()
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == (
        "messages.0.content.0.image.source.base64: image exceeds 5 MB maximum: "
        f"{len(big)} bytes > 5242880 bytes"
    )
    assert "image:png:20x10:red" in ok.content[0].text  # type: ignore[union-attr]


async def test_ollama_takes_raw_base64_and_refuses_a_data_prefix() -> None:
    async with StandIn("ollama") as stand_in, httpx.AsyncClient() as http:
        url = f"{stand_in.base_url}/api/chat"
        message = {"role": "user", "content": "what?", "images": [b64(png((8, 8), "white"))]}
        ok = await http.post(url, json={"model": "llava", "messages": [message], "stream": False})
        assert ok.status_code == 200
        assert "image:png:8x8:white" in ok.json()["message"]["content"]
        message["images"] = [f"data:image/png;base64,{b64(png())}"]
        refused = await http.post(
            url, json={"model": "llava", "messages": [message], "stream": False}
        )
    assert refused.status_code == 400
    assert refused.json() == {"error": "illegal base64 data at input byte 4"}
