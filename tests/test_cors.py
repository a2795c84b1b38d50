"""CORS (issue 9): a page on an allowed origin can call the API from a browser; others cannot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from harness import Platform, running_platform

CONSOLE = "https://console.example.com"


@pytest.fixture
async def cors_platform(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Platform]:
    async with running_platform(
        database_url, redis_url, redis_prefix, gateway={"cors_allowed_origins": [CONSOLE]}
    ) as platform:
        yield platform


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/text-proxy/v1/chat/completions"),
        ("POST", "/api/text-proxy/v1/responses"),
        ("GET", "/api/llm-proxy/v1/models"),
        ("PUT", "/api/settings/llm/text"),
    ],
)
async def test_a_browser_preflight_is_answered(
    cors_platform: Platform, method: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=cors_platform.gateway_url) as http:
        response = await http.options(
            path,
            headers={
                "origin": CONSOLE,
                "access-control-request-method": method,
                "access-control-request-headers": "authorization, content-type, x-stainless-os",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == CONSOLE
    assert method in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


async def test_answers_expose_the_headers_clients_read(cors_platform: Platform) -> None:
    await cors_platform.grant("alice", 5_000_000)
    async with httpx.AsyncClient(base_url=cors_platform.gateway_url, timeout=10) as http:
        response = await http.post(
            "/api/text-proxy/v1/chat/completions",
            headers={"origin": CONSOLE, **cors_platform.auth("alice")},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == CONSOLE
        exposed = response.headers["access-control-expose-headers"].lower()
        for header in ("x-request-id", "x-credits-remaining", "retry-after"):
            assert header in exposed
        assert "x-credits-remaining" in response.headers
        # Errors too: a browser must be able to read why it failed.
        refused = await http.get("/api/text-proxy/v1/models", headers={"origin": CONSOLE})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == CONSOLE


async def test_no_origin_is_allowed_by_default(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.options(
            "/api/text-proxy/v1/chat/completions",
            headers={"origin": CONSOLE, "access-control-request-method": "POST"},
        )
    assert "access-control-allow-origin" not in response.headers


async def test_another_origin_is_not_allowed(cors_platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=cors_platform.gateway_url) as http:
        response = await http.options(
            "/api/text-proxy/v1/chat/completions",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
