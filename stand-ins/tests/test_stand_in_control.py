"""Knobs, the request log, waiting for outcomes, shutdown, and the command line."""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from provider_stand_ins import Behaviour, StandIn, reply_words

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-control-0123456789"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    async with StandIn("openai", keys={KEY}, chunks=4) as running:
        yield running


def test_reply_words_cut_and_pad_deterministically() -> None:
    assert reply_words("a b c d e", 3) == ("Echo:", "a", "b")
    assert reply_words("a", 4) == ("Echo:", "a", "3", "4")
    assert reply_words("", 0) == ()


def test_unknown_or_mistyped_knobs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown knob"):
        Behaviour().updated({"chunk": 3})
    with pytest.raises(ValueError, match="takes int"):
        Behaviour().updated({"chunks": "3"})
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Behaviour().updated({"error_status": 200})


async def test_control_endpoints_set_knobs_and_read_the_log(stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        knobs = await http.post("/_stand_in/behaviour", json={"chunks": 2, "keys": [KEY, "k2"]})
        assert knobs.json()["chunks"] == 2
        refused = await http.post("/_stand_in/behaviour", json={"chunkz": 2})
        assert refused.status_code == 400

        reply = await http.post(
            "/v1/chat/completions", headers={"authorization": "Bearer k2"}, json=CHAT
        )
        assert reply.json()["choices"][0]["message"]["content"] == "Echo: hi"

        log = (await http.get("/_stand_in/requests")).json()
        assert [(entry["key"], entry["model"], entry["outcome"]) for entry in log] == [
            ("k2", "gpt-4o-mini", "completed")
        ]
        stats = (await http.get("/_stand_in/stats")).json()
        assert stats["completed"] == 1

        reset = await http.post("/_stand_in/reset")
        assert reset.json()["chunks"] == 4
        assert (await http.get("/_stand_in/requests")).json() == []


async def test_wait_endpoint_returns_once_a_stream_is_cancelled(stand_in: StandIn) -> None:
    stand_in.set_behaviour(chunks=1000, token_delay_s=0.01)
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        waiter = asyncio.create_task(http.get("/_stand_in/wait?streams_cancelled=1&timeout=10"))
        async with http.stream(
            "POST", "/v1/chat/completions", headers=AUTH, json={**CHAT, "stream": True}
        ) as response:
            async for _ in response.aiter_lines():
                break
        answer = await waiter
    assert answer.status_code == 200
    assert answer.json()["streams_cancelled"] == 1


async def test_wait_endpoint_times_out_with_408(stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        answer = await http.get("/_stand_in/wait?streams_cancelled=1&timeout=0.05")
    assert answer.status_code == 408


async def test_client_leaving_during_first_byte_delay_is_cancelled(stand_in: StandIn) -> None:
    stand_in.set_behaviour(first_byte_delay_s=30)
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        request = asyncio.create_task(http.post("/v1/chat/completions", headers=AUTH, json=CHAT))
        await stand_in.wait_for(lambda: stand_in.stats["in_flight"] == 1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await stand_in.wait_for(lambda: stand_in.stats["cancelled"] == 1)


async def test_stop_does_not_wait_for_hanging_requests() -> None:
    stand_in = await StandIn("anthropic", accept_any_key=True, hang=True).start()
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        request = asyncio.create_task(
            http.post(
                "/v1/messages",
                headers={"x-api-key": "any", "anthropic-version": "2023-06-01"},
                json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": CHAT["messages"]},
            )
        )
        await stand_in.wait_for(lambda: stand_in.stats["in_flight"] == 1)
        async with asyncio.timeout(1.5):
            await stand_in.stop()
        response = await request
    assert response.status_code == 503
    assert stand_in.stats["abandoned"] == 1


async def test_demo_mode_accepts_any_key_and_model() -> None:
    async with StandIn("openai", accept_any_key=True, accept_any_model=True) as demo:
        async with httpx.AsyncClient(base_url=demo.base_url) as http:
            reply = await http.post(
                "/v1/chat/completions",
                headers={"authorization": "Bearer whatever"},
                json={**CHAT, "model": "made-up-model"},
            )
    assert reply.status_code == 200
    assert demo.last_request is not None and demo.last_request.key == "whatever"


async def test_command_line_serves_all_providers_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "provider_stand_ins",
        "--provider",
        "all",
        "--port",
        "0",
        "--demo",
        "--chunks",
        "3",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        urls: dict[str, str] = {}
        async with asyncio.timeout(15):
            while len(urls) < 3:
                line = (await process.stdout.readline()).decode()
                assert line.startswith("stand-in ready"), line
                fields = dict(part.split("=", 1) for part in line.split()[2:])
                urls[fields["provider"]] = fields["url"]
        async with httpx.AsyncClient() as http:
            reply = await http.post(
                urls["anthropic"] + "/v1/messages",
                headers={"x-api-key": "demo", "anthropic-version": "2023-06-01"},
                json={
                    "model": "any",
                    "max_tokens": 10,
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
            tags = await http.get(urls["ollama"] + "/api/tags")
        assert reply.json()["content"][0]["text"] == "Echo: x 3"
        assert tags.status_code == 200
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
