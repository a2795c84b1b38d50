"""Settings through the gateway, then model calls that use them (settings-svc → text-svc)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import asyncpg
import httpx
import openai
import pytest
from harness import (
    PLATFORM_ANTHROPIC_KEY,
    PLATFORM_OPENAI_KEY,
    USER_ANTHROPIC_KEY,
    USER_OPENAI_KEY,
    Platform,
)

MESSAGES = [{"role": "user", "content": "hi"}]


def http(platform: Platform) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=platform.gateway_url, timeout=10)


async def put_config(
    platform: Platform, user: str, backend: str, body: dict, **headers: str
) -> httpx.Response:
    async with http(platform) as client:
        return await client.put(
            f"/api/settings/llm/{backend}", json=body, headers={**platform.auth(user), **headers}
        )


async def test_byok_sends_exactly_the_users_key(platform: Platform) -> None:
    response = await put_config(
        platform, "bob", "text", {"provider": "openai", "model": "gpt-4o", "mode": "byok"}
    )
    assert response.status_code == 200, response.text
    async with http(platform) as client:
        response = await client.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth("bob"),
        )
    assert response.status_code == 200, response.text
    assert USER_OPENAI_KEY not in response.text
    assert response.json()["hint"].endswith(USER_OPENAI_KEY[-4:])

    reply = await platform.client("bob").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.model == "gpt-4o"
    assert platform.openai.last_request.key == USER_OPENAI_KEY

    # Keys are write-only: no route ever shows it.
    async with http(platform) as client:
        everything = await client.get("/api/settings/llm", headers=platform.auth("bob"))
    assert USER_OPENAI_KEY not in everything.text
    assert everything.json()["text"]["api_key"]["is_set"] is True


async def test_member_mode_sends_the_platform_key(platform: Platform) -> None:
    await platform.grant("carol", 5_000_000)
    response = await put_config(
        platform,
        "carol",
        "text",
        {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "mode": "member"},
    )
    assert response.status_code == 200, response.text
    reply = await platform.client("carol").chat.completions.create(
        model="default", messages=MESSAGES
    )
    assert reply.model.startswith("claude-3-5-haiku")
    assert reply.choices[0].message.content.startswith("Echo: hi")
    assert platform.anthropic.last_request.key == PLATFORM_ANTHROPIC_KEY


async def test_anthropic_byok_stream(platform: Platform) -> None:
    await put_config(
        platform,
        "dave",
        "text",
        {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "mode": "byok"},
    )
    async with http(platform) as client:
        await client.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": USER_ANTHROPIC_KEY},
            headers=platform.auth("dave"),
        )
    stream = await platform.client("dave").chat.completions.create(
        model="claude-3-5-haiku-latest",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith(
        "Echo: hi"
    )
    assert chunks[-1].usage.completion_tokens == 20
    assert platform.anthropic.last_request.key == USER_ANTHROPIC_KEY


async def test_ollama_with_a_users_local_base_url(platform: Platform) -> None:
    response = await put_config(
        platform,
        "erin",
        "text",
        {
            "provider": "ollama",
            "model": "llama3.2",
            "mode": "byok",
            "base_url": platform.ollama.base_url,
        },
    )
    assert response.status_code == 200, response.text
    reply = await platform.client("erin").chat.completions.create(
        model="llama3.2", messages=MESSAGES
    )
    assert reply.choices[0].message.content.startswith("Echo: hi")
    assert reply.usage.completion_tokens == 20
    assert platform.ollama.last_request.path == "/api/chat"


async def test_a_config_change_is_used_on_the_next_request(platform: Platform) -> None:
    await platform.grant("frank", 5_000_000)
    client = platform.client("frank")
    await put_config(
        platform, "frank", "text", {"provider": "openai", "model": "gpt-4o-mini", "mode": "member"}
    )
    first = await client.chat.completions.create(model="default", messages=MESSAGES)
    assert first.model == "gpt-4o-mini"
    await put_config(
        platform,
        "frank",
        "text",
        {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "mode": "member"},
    )
    second = await client.chat.completions.create(model="default", messages=MESSAGES)
    assert second.model.startswith("claude-3-5-haiku")


async def test_stale_version_is_rejected_and_nothing_changes(platform: Platform) -> None:
    first = await put_config(
        platform, "gina", "text", {"provider": "openai", "model": "gpt-4o-mini", "mode": "byok"}
    )
    etag = first.headers["etag"]
    ok = await put_config(
        platform,
        "gina",
        "text",
        {"provider": "openai", "model": "gpt-4o", "mode": "byok"},
        **{"if-match": etag},
    )
    assert ok.status_code == 200
    stale = await put_config(
        platform,
        "gina",
        "text",
        {"provider": "openai", "model": "gpt-4o-mini", "mode": "byok"},
        **{"if-match": etag},
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["message"]
    async with http(platform) as client:
        now = await client.get("/api/settings/llm/text", headers=platform.auth("gina"))
    assert now.json()["model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/settings/llm/video", {"provider": "openai"}, 404),
        ("/api/settings/llm/text", {"provider": "dalle-nonsense", "model": "x"}, 400),
        ("/api/settings/llm/text", {"provider": "openai", "model": "not-offered"}, 400),
        (
            "/api/settings/llm/text",
            {"provider": "openai", "model": "gpt-4o", "temperature": 7},
            400,
        ),
        (
            "/api/settings/llm/text",
            {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "temperature": 1.5},
            400,
        ),
        (
            "/api/settings/llm/text",
            {"provider": "openai", "model": "gpt-4o", "temperature": "hot"},
            400,
        ),
        (
            "/api/settings/llm/text",
            {
                "provider": "ollama",
                "model": "llama3",
                "mode": "byok",
                "base_url": "http://169.254.169.254/",
            },
            400,
        ),
        (
            "/api/settings/llm/text",
            {"provider": "openai", "model": "gpt-4o'; DROP TABLE x; --"},
            400,
        ),
    ],
)
async def test_bad_settings_are_refused_and_nothing_is_written(
    platform: Platform, path: str, body: dict, status: int
) -> None:
    async with http(platform) as client:
        response = await client.put(path, json=body, headers=platform.auth("hank"))
        assert response.status_code == status, response.text
        assert response.json()["error"]["message"]
        after = await client.get("/api/settings/llm/text", headers=platform.auth("hank"))
    assert after.json()["version"] == 0


async def test_a_ten_kilobyte_key_is_refused(platform: Platform) -> None:
    async with http(platform) as client:
        response = await client.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": "k" * 10_240},
            headers=platform.auth("ivy"),
        )
        assert response.status_code == 400
        after = await client.get("/api/settings/llm/text", headers=platform.auth("ivy"))
    assert after.json()["api_key"]["is_set"] is False


async def test_users_never_see_each_others_settings(platform: Platform) -> None:
    await put_config(
        platform, "jack", "text", {"provider": "openai", "model": "gpt-4o", "mode": "byok"}
    )
    async with http(platform) as client:
        await client.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth("jack"),
        )
        theirs = await client.get("/api/settings/llm/text", headers=platform.auth("kate"))
        # A user id in the body is ignored: the JWT alone says who the user is.
        await client.put(
            "/api/settings/llm/text",
            json={"provider": "openai", "model": "gpt-4o-mini", "user_id": "jack"},
            headers=platform.auth("kate"),
        )
        jacks = await client.get("/api/settings/llm/text", headers=platform.auth("jack"))
    assert theirs.json()["api_key"]["is_set"] is False
    assert theirs.json()["model"] != "gpt-4o" or theirs.json()["version"] == 0
    assert jacks.json()["model"] == "gpt-4o"


async def test_a_planted_key_never_reaches_logs_spans_or_the_database(
    platform: Platform, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from svc_common.logging import JsonFormatter
    from svc_common.telemetry import add_span_processor, setup_tracing

    setup_tracing("tests", force=True)
    spans = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(spans))
    planted = "sk-planted-secret-key-" + "z" * 20
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("tests"))
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        await put_config(
            platform, "leo", "text", {"provider": "openai", "model": "gpt-4o", "mode": "byok"}
        )
        async with http(platform) as client:
            await client.put(
                "/api/settings/llm/text/api-key",
                json={"api_key": planted},
                headers=platform.auth("leo"),
            )
        # The provider rejects the key: the error the user sees must not echo it either.
        with pytest.raises(openai.APIStatusError) as caught:
            await platform.client("leo").chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert planted not in str(caught.value.body) and planted not in caught.value.message
    finally:
        logging.getLogger().removeHandler(handler)
    assert planted not in caplog.text
    assert planted not in stream.getvalue()
    for span in spans.get_finished_spans():
        assert planted not in json.dumps(dict(span.attributes or {}), default=str)
        assert all(
            planted not in json.dumps(dict(e.attributes or {}), default=str) for e in span.events
        )
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM settings.api_keys")
    finally:
        await conn.close()
    assert rows
    for row in rows:
        for value in row.values():
            raw = value if isinstance(value, bytes) else str(value).encode()
            assert planted.encode() not in raw
            assert planted[-12:].encode() not in raw


async def test_member_key_is_the_platform_key_for_openai_too(platform: Platform) -> None:
    await platform.grant("mia", 5_000_000)
    await put_config(
        platform, "mia", "text", {"provider": "openai", "model": "gpt-4o-mini", "mode": "member"}
    )
    await asyncio.gather(
        *(
            platform.client("mia").chat.completions.create(model="default", messages=MESSAGES)
            for _ in range(3)
        )
    )
    assert {r.key for r in platform.openai.requests} == {PLATFORM_OPENAI_KEY}
