"""Where the model services may connect for a user's base URL (issue 7, items 6-8), end to end:
settings-svc checks when a URL is saved, text-svc again at every connection, and no redirect is
followed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import web
from harness import Platform, running_platform

MESSAGES = [{"role": "user", "content": "my secret prompt"}]


class Recorder:
    """A real HTTP server on 127.0.0.1 that records every request and its body."""

    def __init__(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.hits: list[tuple[str, bytes]] = []
        self._handler = handler
        self.port = 0

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((f"{request.method} {request.path}", await request.read()))
        return await self._handler(request)

    async def __aenter__(self) -> Recorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def ollama_answers(request: web.Request) -> web.StreamResponse:
    """What the redirect target would answer: a model list, a chat answer."""
    if request.path == "/api/tags":
        return web.json_response({"models": [{"name": "exfiltrated-model"}]})
    return web.json_response(
        {"message": {"role": "assistant", "content": "from the target"}, "done": True}
    )


@pytest.fixture
async def target() -> AsyncIterator[Recorder]:
    async with Recorder(ollama_answers) as server:
        yield server


async def put_ollama(platform: Platform, user: str, base_url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        return await client.put(
            "/api/settings/llm/text",
            json={"provider": "ollama", "model": "llama3.2", "mode": "byok", "base_url": base_url},
            headers=platform.auth(user),
        )


async def ask(platform: Platform, user: str, *, stream: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=20) as client:
        return await client.post(
            "/api/text-proxy/v1/chat/completions",
            json={"model": "llama3.2", "messages": MESSAGES, "stream": stream},
            headers=platform.auth(user),
        )


async def list_models(platform: Platform, user: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=20) as client:
        return await client.get("/api/text-proxy/v1/models", headers=platform.auth(user))


async def test_a_redirect_from_an_allowed_host_is_refused_and_never_followed(
    platform: Platform, target: Recorder
) -> None:
    answering = {"status": 302}

    async def redirect(request: web.Request) -> web.StreamResponse:
        # To loopback under a name the operator did not allow-list (only 127.0.0.1 is).
        location = f"http://localhost:{target.port}{request.path}"
        return web.Response(status=answering["status"], headers={"location": location})

    async with Recorder(redirect) as allowed:
        saved = await put_ollama(platform, "mallory", f"http://127.0.0.1:{allowed.port}")
        assert saved.status_code == 200, saved.text
        for status in (302, 307, 308):
            answering["status"] = status
            chat = await ask(platform, "mallory")
            streamed = await ask(platform, "mallory", stream=True)
            models = await list_models(platform, "mallory")
            for response in (chat, streamed, models):
                assert response.status_code == 502, response.text
                error = response.json()["error"]
                assert error["code"] == "upstream_error"
                assert f"redirect (HTTP {status}), which is not followed" in error["message"]
                assert "exfiltrated-model" not in response.text
                assert "from the target" not in response.text
    # Each call reached the allowed server once (redirects are not retried either) ...
    assert [path for path, _ in allowed.hits] == [
        "POST /api/chat",
        "POST /api/chat",
        "GET /api/tags",
    ] * 3
    # ... and never the redirect target: the chat body went nowhere else.
    assert target.hits == []


@pytest.fixture
async def platform_without_loopback(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Platform]:
    """settings-svc still allows 127.0.0.1; the operator took it off text-svc's list."""
    async with running_platform(
        database_url, redis_url, redis_prefix, text={"allowed_base_url_hosts": []}
    ) as p:
        yield p


async def test_a_url_saved_while_allowed_stops_working_when_the_allow_list_changes(
    platform_without_loopback: Platform,
) -> None:
    platform = platform_without_loopback
    saved = await put_ollama(platform, "erin", platform.ollama.base_url)
    assert saved.status_code == 200, saved.text

    for response in (
        await ask(platform, "erin"),
        await ask(platform, "erin", stream=True),
        await list_models(platform, "erin"),
    ):
        assert response.status_code == 502, response.text
        message = response.json()["error"]["message"]
        assert "not allowed at connect time" in message
        assert "127.0.0.1" in message
    assert platform.ollama.requests == []


@pytest.mark.parametrize(
    "base_url",
    [
        "http://[::127.0.0.1]:11434",
        "http://[::7f00:1]:11434",
        "http://[2002:7f00:1::]:11434",
        "http://[2002:a9fe:a9fe::]/",
        "http://[64:ff9b:1::a9fe:a9fe]/",
    ],
)
async def test_ipv6_transition_spellings_are_refused_when_saved(
    platform: Platform, base_url: str
) -> None:
    response = await put_ollama(platform, "mallory", base_url)
    assert response.status_code == 400, response.text
    assert "non-public address" in response.json()["error"]["message"]
