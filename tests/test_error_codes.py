"""Error reasons across the platform: what settings-svc says reaches the user as its own code."""

from __future__ import annotations

import httpx
import openai
import pytest
from harness import Platform

MESSAGES = [{"role": "user", "content": "hi"}]
KEY_ROUTE = "PUT /api/settings/llm/text/api-key"


async def _byok_without_a_key(platform: Platform, user: str) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        response = await client.put(
            "/api/settings/llm/text",
            json={"provider": "openai", "model": "gpt-4o", "mode": "byok"},
            headers=platform.auth(user),
        )
    assert response.status_code == 200, response.text


async def test_a_byok_user_without_a_key_is_told_to_set_one(platform: Platform) -> None:
    await _byok_without_a_key(platform, "nokey")
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        for stream in (False, True):
            response = await client.post(
                "/api/text-proxy/v1/chat/completions",
                json={"model": "gpt-4o", "messages": MESSAGES, "stream": stream},
                headers=platform.auth("nokey"),
            )
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "missing_api_key"
            assert error["type"] == "invalid_request_error"
            assert KEY_ROUTE in error["message"]

    # The openai SDK raises it as a BadRequestError carrying the same code.
    with pytest.raises(openai.BadRequestError) as caught:
        await platform.client("nokey").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.code == "missing_api_key"
    assert platform.openai.last_request is None  # the provider was never called


async def test_member_mode_for_a_non_member_is_its_own_code(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        response = await client.put(
            "/api/settings/llm/text",
            json={"provider": "openai", "model": "gpt-4o", "mode": "member"},
            headers=platform.auth("guest", member=False),
        )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "membership_required"
    assert response.json()["error"]["type"] == "permission_error"
