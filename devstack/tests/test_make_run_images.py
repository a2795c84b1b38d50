"""`make run`'s offline demo generates images: image-svc against the demo stand-ins."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from devstack.testing import DevStack


@pytest.mark.timeout(120)
async def test_the_demo_provider_generates_an_image_with_progress(make_run: DevStack) -> None:
    make_run.start()
    await make_run.wait_ready()
    token = make_run.token("alice")
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=make_run.gateway_url) as http:
        # Member mode for images is off by default: the user's own key (the demo takes any).
        response = await http.put(
            "/api/settings/llm/image",
            json={"provider": "openai", "model": "gpt-image-2", "mode": "byok"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        response = await http.put(
            "/api/settings/llm/image/api-key", json={"api_key": "sk-demo-user-key"}, headers=headers
        )
        assert response.status_code == 200, response.text
    client = openai.AsyncOpenAI(
        base_url=f"{make_run.gateway_url}/api/image-proxy/v1", api_key=token, max_retries=0
    )
    stream = await client.images.generate(
        model="gpt-image-2", prompt="a lighthouse", size="1024x1024", stream=True, partial_images=1
    )
    kinds = []
    async for event in stream:
        kinds.append(event.type)
        if event.type == "image_generation.completed":
            image = Image.open(io.BytesIO(base64.b64decode(event.b64_json)))
            assert image.size == (1024, 1024)
    await client.close()
    assert "image_generation.progress" in kinds
    assert kinds[-1] == "image_generation.completed"
