"""The text path end to end: the official openai SDK → gateway → text-svc → provider stand-in."""

from __future__ import annotations

import httpx
import openai
import pytest
from harness import PLATFORM_OPENAI_KEY, Platform

PREFIXES = ["/api/text-proxy/v1", "/api/llm-proxy/v1"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_completion_through_both_prefixes(platform: Platform, prefix: str) -> None:
    await platform.grant("alice", 5_000_000)
    client = platform.client("alice", prefix=prefix)
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.startswith("Echo: hello there")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 20
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 20
    # Member mode: the platform's key reached the provider, not the user's token.
    assert platform.openai.last_request.key == PLATFORM_OPENAI_KEY


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_stream_ends_with_usage_then_done(platform: Platform, prefix: str) -> None:
    await platform.grant("alice", 5_000_000)
    client = platform.client("alice", prefix=prefix)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Echo: stream me")
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 20
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"


async def test_sse_bytes_end_with_done(platform: Platform) -> None:
    await platform.grant("alice", 5_000_000)
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.post(
            "/api/text-proxy/v1/chat/completions",
            headers=platform.auth("alice"),
            json={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "x"}],
                "stream": True,
            },
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_models_list(platform: Platform, prefix: str) -> None:
    models = await platform.client("alice", prefix=prefix).models.list()
    ids = [m.id for m in models.data]
    assert "gpt-4o-mini" in ids


async def test_bad_tokens_raise_authentication_error(platform: Platform) -> None:
    bad = platform.client("alice", api_key="not-a-jwt")
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    expired = platform.client("alice", api_key=platform.token("alice", ttl_s=-10))
    with pytest.raises(openai.AuthenticationError):
        await expired.models.list()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": 3,
            },
            "temperature",
        ),
        # An unknown model is a 404 model_not_found since issue 9 (test_tools.py).
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
    ],
)
async def test_bad_requests_raise_bad_request_error(
    platform: Platform, body: dict, needle: str
) -> None:
    await platform.grant("alice", 5_000_000)
    with pytest.raises(openai.BadRequestError) as caught:
        await platform.client("alice").chat.completions.create(**body)
    assert needle in caught.value.message
    assert platform.openai.stats["requests"] == 0
