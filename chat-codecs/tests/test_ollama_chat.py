"""Ollama chat (PROTOCOLS.md d): options, raw base64 images, tools and format, and the NDJSON
stream read into the normalised stream."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import pytest

from chat_codecs import (
    ChatRequest,
    Completion,
    Delta,
    Finish,
    ImagePart,
    Message,
    ModelInfo,
    OllamaChat,
    StreamEvent,
    TextPart,
    TokenUsage,
    Tool,
    ToolCallDelta,
)
from upstream import Failure, ProviderError

Decode = Callable[..., Awaitable[list[StreamEvent]]]
PNG = b"\x89PNG\r\n\x1a\n-not-really-a-png"


def test_no_key_no_header_and_a_key_as_bearer() -> None:
    assert OllamaChat().headers("") == {}
    assert OllamaChat().headers("proxy-key") == {"authorization": "Bearer proxy-key"}


def test_parameters_go_in_options() -> None:
    request = ChatRequest(
        "llama3",
        (Message.of_text("user", "hi"),),
        max_tokens=32,
        temperature=0.1,
        stop=("x",),
        seed=3,
    )
    assert OllamaChat().request_body(request, stream=True) == {
        "model": "llama3",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "options": {"num_predict": 32, "temperature": 0.1, "stop": ["x"], "seed": 3},
    }


def test_images_are_raw_base64_in_the_messages_images() -> None:
    message = Message(
        "user", (TextPart("what is "), ImagePart(data=PNG, media_type="image/png"), TextPart("it"))
    )
    body = OllamaChat().request_body(ChatRequest("llava", (message,)), stream=False)
    encoded = base64.b64encode(PNG).decode()
    assert body["messages"] == [{"role": "user", "content": "what is it", "images": [encoded]}]
    assert not encoded.startswith("data:")


def test_an_image_url_cannot_be_sent_to_ollama() -> None:
    message = Message("user", (ImagePart(url="https://example.com/cat.png"),))
    with pytest.raises(ProviderError) as caught:
        OllamaChat().request_body(ChatRequest("llava", (message,)), stream=False)
    assert caught.value.failure is Failure.BAD_REQUEST


def test_tools_and_a_json_format() -> None:
    request = ChatRequest(
        "llama3",
        (Message.of_text("user", "hi"),),
        tools=(Tool("weather", "the weather", {"type": "object"}),),
        response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
    )
    body = OllamaChat().request_body(request, stream=False)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "the weather",
                "parameters": {"type": "object"},
            },
        }
    ]
    assert body["format"] == {"type": "object"}


STREAM = (
    b'{"model":"llama3","created_at":"2024-01-01T00:00:00Z",'
    b'"message":{"role":"assistant","content":"The"},"done":false}\n'
    b"\n"
    b'{"model":"llama3","created_at":"2024-01-01T00:00:00Z",'
    b'"message":{"role":"assistant","content":" sky"},"done":false}\n'
    b'{"model":"llama3","created_at":"2024-01-01T00:00:00Z",'
    b'"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
    b'"total_duration":5,"load_duration":1,"prompt_eval_count":7,"prompt_eval_duration":1,'
    b'"eval_count":2,"eval_duration":1}'  # the last line without its newline
)


@pytest.mark.parametrize("size", [1, 9, len(STREAM)])
async def test_a_stream_is_deltas_then_a_finish_with_the_counts(size: int, decode: Decode) -> None:
    assert await decode(OllamaChat(), STREAM, size) == [
        Delta("The"),
        Delta(" sky"),
        Finish("stop", TokenUsage(7, 2)),
    ]


async def test_tool_calls_stream_whole_with_the_index_as_id(decode: Decode) -> None:
    body = (
        b'{"message":{"role":"assistant","content":"","tool_calls":[{"function":'
        b'{"name":"weather","arguments":{"city":"Paris"}}}]},"done":false}\n'
        b'{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}\n'
    )
    assert await decode(OllamaChat(), body) == [
        ToolCallDelta(0, "call_0", "weather", '{"city":"Paris"}'),
        Finish("tool_calls", None),
    ]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"error":"model not found"}\n', "reported an error"),
        (b'{"message":{"content":"a"},"done":false}\n', "before the answer was complete"),
        (b'{"message":\n', "malformed line"),
    ],
)
async def test_errors_incomplete_and_malformed_streams_fail(
    body: bytes, detail: str, decode: Decode
) -> None:
    with pytest.raises(ProviderError) as caught:
        await decode(OllamaChat(), body)
    assert caught.value.failure is Failure.ERROR
    assert detail in caught.value.detail


def test_a_whole_answer_and_the_tags() -> None:
    answer = {
        "model": "llama3",
        "message": {"role": "assistant", "content": "blue"},
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 3,
        "eval_count": 1,
    }
    assert OllamaChat().completion(answer) == Completion("blue", "length", TokenUsage(3, 1))
    tags = {"models": [{"name": "llama3:latest", "size": 1, "details": {"family": "llama"}}]}
    assert OllamaChat().models(tags) == [ModelInfo("llama3:latest", "ollama")]


def test_what_ollama_cannot_honour_is_refused_and_none_offers_no_tools() -> None:
    tools = (Tool("weather", "", {"type": "object"}),)
    for fields, param in (
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "weather"}}}, "tool_choice"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"logprobs": True}, "logprobs"),
    ):
        request = ChatRequest("llama3", (Message.of_text("user", "hi"),), tools=tools, **fields)  # type: ignore[arg-type]
        with pytest.raises(ProviderError) as caught:
            OllamaChat().request_body(request, stream=False)
        assert (caught.value.failure, caught.value.param) == (Failure.BAD_REQUEST, param)
    refused = ChatRequest(
        "llama3", (Message.of_text("user", "hi"),), tools=tools, tool_choice="none"
    )
    assert "tools" not in OllamaChat().request_body(refused, stream=False)
