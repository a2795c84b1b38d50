"""The Ollama stand-in: NDJSON ``/api/chat`` over raw HTTP, and its OpenAI-compatible ``/v1/``."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from provider_stand_ins import StandIn, reply_text

pytestmark = pytest.mark.timeout(20)

CHUNKS = 6
# Plain JSON, as a gateway sends it (not the SDK's TypedDicts).
MESSAGES: list[Any] = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def ollama_stand_in() -> AsyncIterator[StandIn]:
    async with StandIn("ollama", chunks=CHUNKS) as stand_in:
        yield stand_in


async def test_chat_streams_ndjson_by_default(ollama_stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=ollama_stand_in.base_url) as http:
        response = await http.post("/api/chat", json={"model": "llama3.2", "messages": MESSAGES})

    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    *parts, final = lines
    assert all(part["done"] is False for part in parts)
    assert "".join(part["message"]["content"] for part in parts) == reply_text(
        "hello there", CHUNKS
    )
    assert final["done"] is True
    assert final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert (final["prompt_eval_count"], final["eval_count"]) == (2, CHUNKS)
    for duration in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[duration], int)
    assert ollama_stand_in.stats["streams_completed"] == 1


# A real 1x1 PNG: the stand-in decodes images as Ollama does.
RED_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


async def test_chat_without_stream_and_with_num_predict(ollama_stand_in: StandIn) -> None:
    body = {
        "model": "llava:latest",
        "messages": [{"role": "user", "content": "what is this", "images": [RED_PIXEL_PNG]}],
        "stream": False,
        "options": {"num_predict": 3},
    }
    async with httpx.AsyncClient(base_url=ollama_stand_in.base_url) as http:
        response = await http.post("/api/chat", json=body)

    reply = response.json()
    assert reply["message"] == {"role": "assistant", "content": "Echo: what is"}
    assert reply["done"] is True
    assert reply["done_reason"] == "length"
    assert reply["eval_count"] == 3
    assert ollama_stand_in.last_request is not None
    assert ollama_stand_in.last_request.images == 1


async def test_tags_version_and_unknown_model(ollama_stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=ollama_stand_in.base_url) as http:
        tags = (await http.get("/api/tags")).json()
        version = (await http.get("/api/version")).json()
        missing = await http.post("/api/chat", json={"model": "nope", "messages": MESSAGES})

    assert "llama3.2:latest" in [model["name"] for model in tags["models"]]
    assert set(tags["models"][0]["details"]) >= {"format", "family", "parameter_size"}
    assert isinstance(version["version"], str)
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "nope" not found, try pulling it first'}


async def test_errors_are_plain_error_objects(ollama_stand_in: StandIn) -> None:
    ollama_stand_in.set_behaviour(error_status=503)
    async with httpx.AsyncClient(base_url=ollama_stand_in.base_url) as http:
        response = await http.post("/api/chat", json={"model": "llama3.2", "messages": MESSAGES})
    assert response.status_code == 503
    assert set(response.json()) == {"error"}


async def test_openai_compatible_api_ignores_the_key(ollama_stand_in: StandIn) -> None:
    async with openai.AsyncOpenAI(
        base_url=ollama_stand_in.sdk_base_url, api_key="ollama", max_retries=0
    ) as sdk:
        completion = await sdk.chat.completions.create(model="llama3.2", messages=MESSAGES)
        stream = await sdk.chat.completions.create(
            model="llama3.2",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        models = [model.id async for model in sdk.models.list()]

    assert completion.choices[0].message.content == reply_text("hello there", CHUNKS)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == CHUNKS
    assert "llama3.2:latest" in models
    assert [record.key for record in ollama_stand_in.requests] == ["ollama"] * 3
    assert {record.provider for record in ollama_stand_in.requests} == {"ollama"}


async def test_configured_keys_are_checked(ollama_stand_in: StandIn) -> None:
    async with StandIn("ollama", keys={"proxy-key"}) as guarded:
        async with httpx.AsyncClient(base_url=guarded.base_url) as http:
            refused = await http.get("/api/tags")
            allowed = await http.get("/api/tags", headers={"authorization": "Bearer proxy-key"})
    assert refused.status_code == 401
    assert refused.json() == {"error": "unauthorized"}
    assert allowed.status_code == 200
