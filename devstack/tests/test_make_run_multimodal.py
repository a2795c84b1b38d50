"""`make run`'s offline demo answers multimodal requests: its stand-ins see the image."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from devstack.testing import DevStack


@pytest.mark.timeout(90)
async def test_the_demo_provider_answers_about_an_image(make_run: DevStack) -> None:
    make_run.start()
    await make_run.wait_ready()
    token = make_run.token("alice")
    async with httpx.AsyncClient(base_url=make_run.gateway_url) as http:
        response = await http.put(
            "/api/settings/llm/multimodal",
            json={"provider": "openai", "model": "gpt-4o", "mode": "member"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
    buffer = io.BytesIO()
    Image.new("RGB", (24, 12), "green").save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    client = openai.AsyncOpenAI(
        base_url=f"{make_run.gateway_url}/api/multimodal-proxy/v1", api_key=token, max_retries=0
    )
    answer = await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    await client.close()
    assert "image:png:24x12:green" in (answer.choices[0].message.content or "")
