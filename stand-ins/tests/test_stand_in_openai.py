"""The OpenAI stand-in, driven by the official ``openai`` SDK."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from provider_stand_ins import StandIn, reply_text

pytestmark = pytest.mark.timeout(20)

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
CHUNKS = 6

# Plain JSON, as a gateway sends it (not the SDK's TypedDicts).
MESSAGES: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hello there"},
]
PROMPT_TOKENS = 4  # "Be brief." + "hello there"


@pytest.fixture
async def openai_stand_in() -> AsyncIterator[StandIn]:
    async with StandIn("openai", keys={OPENAI_KEY}, chunks=CHUNKS) as stand_in:
        yield stand_in


def client(
    stand_in: StandIn, key: str = OPENAI_KEY, *, max_retries: int = 0, timeout: float = 10.0
) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stand_in.sdk_base_url, api_key=key, max_retries=max_retries, timeout=timeout
    )


async def test_completion_is_deterministic_and_counts_words(openai_stand_in: StandIn) -> None:
    async with client(openai_stand_in) as sdk:
        completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: hello there 4 5 6"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        PROMPT_TOKENS,
        CHUNKS,
    )
    assert completion.usage.total_tokens == PROMPT_TOKENS + CHUNKS
    record = openai_stand_in.last_request
    assert record is not None
    assert (record.key, record.model, record.path, record.outcome) == (
        OPENAI_KEY,
        "gpt-4o-mini",
        "/v1/chat/completions",
        "completed",
    )


async def test_stream_with_usage_ends_with_a_usage_chunk(openai_stand_in: StandIn) -> None:
    async with client(openai_stand_in) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]

    *content_chunks, usage_chunk = chunks
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert {chunk.created for chunk in chunks} == {chunks[0].created}
    assert all(chunk.usage is None for chunk in content_chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in content_chunks)
    assert text == reply_text("hello there", CHUNKS)
    assert content_chunks[-1].choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == CHUNKS
    assert usage_chunk.usage.prompt_tokens == PROMPT_TOKENS
    assert openai_stand_in.stats["streams_completed"] == 1


async def test_stream_wire_format_is_data_only_and_ends_with_done(
    openai_stand_in: StandIn,
) -> None:
    async with httpx.AsyncClient(base_url=openai_stand_in.base_url) as http:
        response = await http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {OPENAI_KEY}"},
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        )

    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-1])
    assert '"usage"' not in response.text
    # One role chunk, one chunk per word, one finish chunk.
    assert len(events) - 2 == 1 + CHUNKS + 1


async def test_max_tokens_cuts_the_reply(openai_stand_in: StandIn) -> None:
    async with client(openai_stand_in) as sdk:
        completion = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=2
        )
    assert completion.choices[0].message.content == "Echo: hello"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


async def test_wrong_key_gets_a_masked_401(openai_stand_in: StandIn) -> None:
    wrong_key = "sk-wrong-key-abcdefghijklmnop"
    async with client(openai_stand_in, wrong_key) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    error = caught.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert error.type == "invalid_request_error"
    assert wrong_key not in error.message
    assert "Incorrect API key provided: sk-wr" in error.message
    assert error.message.endswith("https://platform.openai.com/account/api-keys.")
    assert openai_stand_in.last_request is not None
    assert openai_stand_in.last_request.key == wrong_key


async def test_rate_limit_carries_retry_after(openai_stand_in: StandIn) -> None:
    openai_stand_in.set_behaviour(error_status=429, retry_after_s=7)
    async with client(openai_stand_in) as sdk:
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"


async def test_sdk_retries_after_retry_after_until_fail_times_is_spent(
    openai_stand_in: StandIn,
) -> None:
    openai_stand_in.set_behaviour(error_status=429, retry_after_s=0.01, fail_times=2)
    async with client(openai_stand_in, max_retries=2) as sdk:
        completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == reply_text("hello there", CHUNKS)
    assert [record.status for record in openai_stand_in.requests] == [429, 429, 200]


async def test_fail_times_fails_only_the_next_requests(openai_stand_in: StandIn) -> None:
    openai_stand_in.set_behaviour(error_status=500, fail_times=1)
    async with client(openai_stand_in) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert caught.value.type == "server_error"
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [record.outcome for record in openai_stand_in.requests] == ["failed", "completed"]


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "gpt-4o-mini"}, 400, "messages", "missing_required_parameter"),
        ({"messages": MESSAGES}, 400, None, None),
        (
            {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 2.5},
            400,
            "temperature",
            "decimal_above_max_value",
        ),
        ({"model": "gpt-9-imaginary", "messages": MESSAGES}, 404, None, "model_not_found"),
    ],
)
async def test_invalid_requests_are_refused_like_openai(
    openai_stand_in: StandIn, body: dict[str, object], status: int, param: str, code: str
) -> None:
    async with client(openai_stand_in) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.post("/chat/completions", body=body, cast_to=dict)
    assert caught.value.status_code == status
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert caught.value.body["code"] == code  # type: ignore[index]
    assert openai_stand_in.stats["rejected"] == 1


RED_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


async def test_image_parts_are_counted_in_both_forms(openai_stand_in: StandIn) -> None:
    content: list[Any] = [
        {"type": "text", "text": "what is this"},
        # A real 1x1 PNG: the stand-in decodes each image and names it in the reply.
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + RED_PIXEL_PNG}},
        {"type": "image_url", "image_url": "https://example.com/cat.png"},
    ]
    async with client(openai_stand_in) as sdk:
        completion = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
        )
    assert completion.choices[0].message.content == (
        "Echo: what is this image:png:1x1:red image:url"
    )
    assert openai_stand_in.last_request is not None
    assert openai_stand_in.last_request.images == 2


async def test_models_list(openai_stand_in: StandIn) -> None:
    async with client(openai_stand_in) as sdk:
        models = [model.id async for model in sdk.models.list()]
        model = await sdk.models.retrieve("gpt-4o")
    assert "gpt-4o-mini" in models
    assert model.owned_by == "system"


async def test_disconnect_after_chunks_cuts_the_stream(openai_stand_in: StandIn) -> None:
    openai_stand_in.set_behaviour(disconnect_after_chunks=2)
    received: list[str] = []
    async with client(openai_stand_in) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                assert chunk.usage is None
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Echo: hello"
    assert openai_stand_in.last_request is not None
    assert openai_stand_in.last_request.outcome == "disconnected"


async def test_stream_error_event_raises(openai_stand_in: StandIn) -> None:
    openai_stand_in.set_behaviour(stream_error_after_chunks=1)
    async with client(openai_stand_in) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        with pytest.raises(openai.APIError, match="The server had an error"):
            async for _ in stream:
                pass


async def test_hang_times_out_the_client_and_is_seen_as_cancelled(
    openai_stand_in: StandIn,
) -> None:
    openai_stand_in.set_behaviour(hang=True)
    async with client(openai_stand_in, timeout=0.3) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    await openai_stand_in.wait_for(lambda: openai_stand_in.stats["cancelled"] == 1)
    assert openai_stand_in.stats["in_flight"] == 0


async def test_closing_the_stream_mid_way_is_recorded_as_cancelled(
    openai_stand_in: StandIn,
) -> None:
    openai_stand_in.set_behaviour(chunks=1000, token_delay_s=0.01)
    async with client(openai_stand_in) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 3:
                break
        await stream.close()
    await openai_stand_in.wait_for(lambda: openai_stand_in.stats["streams_cancelled"] == 1)
    record = openai_stand_in.last_request
    assert record is not None
    assert record.outcome == "cancelled"
    assert 2 <= record.chunks_sent < 1000
