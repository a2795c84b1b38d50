"""The Anthropic stand-in, driven by the official ``anthropic`` SDK."""

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from provider_stand_ins import StandIn, reply_text

pytestmark = pytest.mark.timeout(20)

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
CHUNKS = 6
MODEL = "claude-3-5-haiku-20241022"
# Plain JSON, as a gateway sends it (not the SDK's TypedDicts).
MESSAGES: list[Any] = [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
PROMPT_TOKENS = 4  # system "Be brief." + "hello there"


@pytest.fixture
async def anthropic_stand_in() -> AsyncIterator[StandIn]:
    async with StandIn("anthropic", keys={ANTHROPIC_KEY}, chunks=CHUNKS) as stand_in:
        yield stand_in


def client(stand_in: StandIn, key: str = ANTHROPIC_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stand_in.sdk_base_url, api_key=key, max_retries=0)


async def test_message_is_deterministic_and_counts_words(anthropic_stand_in: StandIn) -> None:
    async with client(anthropic_stand_in) as sdk:
        message = await sdk.messages.create(
            model=MODEL, max_tokens=100, system="Be brief.", messages=MESSAGES
        )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: hello there 4 5 6"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT_TOKENS, CHUNKS)
    record = anthropic_stand_in.last_request
    assert record is not None
    assert (record.key, record.model, record.path) == (ANTHROPIC_KEY, MODEL, "/v1/messages")


async def test_stream_gives_text_and_final_usage(anthropic_stand_in: StandIn) -> None:
    async with client(anthropic_stand_in) as sdk:
        async with sdk.messages.stream(
            model=MODEL, max_tokens=100, system="Be brief.", messages=MESSAGES
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()

    assert len(texts) == CHUNKS
    assert "".join(texts) == reply_text("hello there", CHUNKS)
    assert final.content[0].type == "text"
    assert final.content[0].text == reply_text("hello there", CHUNKS)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == PROMPT_TOKENS
    assert final.usage.output_tokens == CHUNKS


async def test_stream_wire_format_names_every_event(anthropic_stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=anthropic_stand_in.base_url) as http:
        response = await http.post(
            "/v1/messages",
            headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
            json={"model": MODEL, "max_tokens": 3, "messages": MESSAGES, "stream": True},
        )

    events = [event for event in response.text.split("\n\n") if event]
    names = []
    for event in events:
        name_line, data_line = event.split("\n")
        name = name_line.removeprefix("event: ")
        assert orjson.loads(data_line.removeprefix("data: "))["type"] == name
        names.append(name)
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message_delta = orjson.loads(events[-2].split("\n")[1].removeprefix("data: "))
    assert message_delta["delta"]["stop_reason"] == "max_tokens"
    assert message_delta["usage"]["output_tokens"] == 3


async def test_max_tokens_cuts_the_reply(anthropic_stand_in: StandIn) -> None:
    async with client(anthropic_stand_in) as sdk:
        message = await sdk.messages.create(model=MODEL, max_tokens=2, messages=MESSAGES)
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: hello"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


async def test_wrong_key_gets_authentication_error(anthropic_stand_in: StandIn) -> None:
    async with client(anthropic_stand_in, "sk-ant-wrong") as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await sdk.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert anthropic_stand_in.last_request is not None
    assert anthropic_stand_in.last_request.key == "sk-ant-wrong"


async def test_overloaded_529_raises_overloaded_error(anthropic_stand_in: StandIn) -> None:
    anthropic_stand_in.set_behaviour(error_status=529)
    async with client(anthropic_stand_in) as sdk:
        with pytest.raises(anthropic.OverloadedError) as caught:
            await sdk.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_rate_limit_carries_retry_after(anthropic_stand_in: StandIn) -> None:
    anthropic_stand_in.set_behaviour(error_status=429, retry_after_s=3, fail_times=1)
    async with client(anthropic_stand_in) as sdk:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await sdk.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
        assert caught.value.response.headers["retry-after"] == "3"
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert [record.outcome for record in anthropic_stand_in.requests] == ["failed", "completed"]


async def test_mid_stream_error_event_raises(anthropic_stand_in: StandIn) -> None:
    anthropic_stand_in.set_behaviour(stream_error_after_chunks=2)
    texts: list[str] = []
    async with client(anthropic_stand_in) as sdk:
        with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
            async with sdk.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    assert texts == ["Echo:", " hello"]
    assert anthropic_stand_in.stats["stream_error"] == 1


async def test_disconnect_after_chunks_has_no_message_stop(anthropic_stand_in: StandIn) -> None:
    anthropic_stand_in.set_behaviour(disconnect_after_chunks=1)
    async with client(anthropic_stand_in) as sdk:
        # anthropic 2.x lets the transport's error through unwrapped while streaming.
        with pytest.raises(Exception, match="incomplete chunked read") as caught:
            async with sdk.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES) as stream:
                await stream.get_final_message()
    assert not isinstance(caught.value, anthropic.APIStatusError)
    assert anthropic_stand_in.stats["disconnected"] == 1


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({"model": MODEL, "messages": MESSAGES}, {}, "max_tokens: Field required"),
        (
            {"model": MODEL, "messages": MESSAGES, "max_tokens": 5, "temperature": 1.5},
            {},
            "temperature: Input should be less than or equal to 1",
        ),
        (
            {"model": MODEL, "messages": MESSAGES, "max_tokens": 5},
            {"anthropic-version": None},
            "anthropic-version: header is required",
        ),
    ],
)
async def test_invalid_requests_get_invalid_request_error(
    anthropic_stand_in: StandIn,
    body: dict[str, object],
    headers: dict[str, str | None],
    message: str,
) -> None:
    defaults = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    merged = {**defaults, **headers}
    sent_headers = {name: value for name, value in merged.items() if value is not None}
    async with httpx.AsyncClient(base_url=anthropic_stand_in.base_url) as http:
        response = await http.post("/v1/messages", headers=sent_headers, json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"] == {"type": "invalid_request_error", "message": message}


async def test_unknown_model_is_not_found(anthropic_stand_in: StandIn) -> None:
    async with client(anthropic_stand_in) as sdk:
        with pytest.raises(anthropic.NotFoundError):
            await sdk.messages.create(model="claude-imaginary", max_tokens=5, messages=MESSAGES)


async def test_models_list_pages(anthropic_stand_in: StandIn) -> None:
    async with client(anthropic_stand_in) as sdk:
        first_page = await sdk.models.list(limit=2)
        every_model = [model.id async for model in sdk.models.list(limit=2)]
    assert first_page.has_more is True
    assert first_page.first_id == first_page.data[0].id
    assert every_model == list(anthropic_stand_in.state.models)
