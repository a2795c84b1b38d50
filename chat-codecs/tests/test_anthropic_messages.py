"""Anthropic Messages (PROTOCOLS.md c): headers, the request body, base64 image sources, tool
blocks, and the named-event SSE stream read into the normalised stream."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import pytest

from chat_codecs import (
    AnthropicMessages,
    ChatRequest,
    Completion,
    Delta,
    Finish,
    ImagePart,
    Message,
    ModelInfo,
    StreamEvent,
    TextPart,
    TokenUsage,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
)
from upstream import Failure, ProviderError

Decode = Callable[..., Awaitable[list[StreamEvent]]]
JPEG = b"\xff\xd8\xff\xe0-not-really-a-jpeg"


def test_headers_are_x_api_key_and_the_version() -> None:
    assert AnthropicMessages().headers("sk-ant-1") == {
        "x-api-key": "sk-ant-1",
        "anthropic-version": "2023-06-01",
    }


def test_a_text_request_has_system_apart_and_stop_sequences() -> None:
    request = ChatRequest(
        model="claude-haiku-4-5",
        messages=(
            Message.of_text("system", "be brief"),
            Message.of_text("system", "be kind"),
            Message.of_text("user", "hi"),
        ),
        max_tokens=100,
        temperature=0.2,
        stop=("END",),
    )
    assert AnthropicMessages().request_body(request, stream=True) == {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100,
        "system": "be brief\n\nbe kind",
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "stream": True,
    }


def test_images_are_base64_sources_without_a_data_prefix_or_url_sources() -> None:
    message = Message(
        "user",
        (
            ImagePart(data=JPEG, media_type="image/jpeg"),
            ImagePart(url="https://example.com/cat.jpg"),
            TextPart("what is this?"),
        ),
    )
    body = AnthropicMessages().request_body(
        ChatRequest("claude", (message,), max_tokens=10), stream=False
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/jpeg",
                        "data": base64.b64encode(JPEG).decode(),
                    },
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "what is this?"},
            ],
        }
    ]


def test_tool_calls_and_results_are_tool_use_and_tool_result_blocks() -> None:
    request = ChatRequest(
        "claude",
        (
            Message.of_text("user", "weather in Paris and Rome?"),
            Message(
                "assistant",
                (
                    TextPart("checking"),
                    ToolCallPart("toolu_1", "weather", '{"city":"Paris"}'),
                    ToolCallPart("toolu_2", "weather", '{"city":"Rome"}'),
                ),
            ),
            Message("tool", (ToolResultPart("toolu_1", "sunny"),)),
            Message("tool", (ToolResultPart("toolu_2", "rain"),)),
        ),
        max_tokens=10,
        tools=(Tool("weather", "the weather", {"type": "object"}),),
        tool_choice={"type": "function", "function": {"name": "weather"}},
    )
    body = AnthropicMessages().request_body(request, stream=False)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "checking"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",  # one turn's results share one user message
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
            ],
        },
    ]
    assert body["tools"] == [
        {"name": "weather", "description": "the weather", "input_schema": {"type": "object"}}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "weather"}
    required = ChatRequest("claude", (), max_tokens=1, tool_choice="required")
    assert AnthropicMessages().request_body(required, stream=False)["tool_choice"] == {
        "type": "any"
    }


def test_a_response_format_it_cannot_carry_is_a_bad_request() -> None:
    # The tools issue: json_object and json_schema are carried (a forced tool); an unknown type,
    # a non-object schema, or a format beside the caller's tools are not.
    for response_format, tools in (
        ({"type": "xml"}, ()),
        ({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "array"}}}, ()),
        ({"type": "json_object"}, (Tool("weather"),)),
    ):
        request = ChatRequest(
            "claude", (), max_tokens=1, response_format=response_format, tools=tools
        )
        with pytest.raises(ProviderError) as caught:
            AnthropicMessages().request_body(request, stream=False)
        assert (caught.value.failure, caught.value.param) == (
            Failure.BAD_REQUEST,
            "response_format",
        )


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_a_json_schema_is_a_forced_tool_whose_input_is_the_answer() -> None:
    request = ChatRequest(
        "claude",
        (Message.of_text("user", "where?"),),
        max_tokens=5,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}},
    )
    body = AnthropicMessages().request_body(request, stream=False)
    assert body["tools"] == [
        {
            "name": "json_response",
            "description": "Answer with the response, as this tool's input.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    answer = {
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "json_response",
                "input": {"city": "Oslo"},
            }
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    completion = AnthropicMessages().completion(answer)
    assert (completion.text, completion.finish_reason, completion.tool_calls) == (
        '{"city":"Oslo"}',
        "stop",
        (),
    )


async def test_a_streamed_forced_tool_is_streamed_as_text(decode: Decode) -> None:
    start = '{"type":"tool_use","id":"toolu_1","name":"json_response","input":{}}'
    body = b"".join(
        [
            event("message_start", '{"message":{"usage":{"input_tokens":3,"output_tokens":1}}}'),
            event("content_block_start", '{"index":0,"content_block":' + start + "}"),
            event(
                "content_block_delta",
                '{"index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"city"}}',
            ),
            event(
                "content_block_delta",
                '{"index":0,"delta":{"type":"input_json_delta","partial_json":"\\":\\"Oslo\\"}"}}',
            ),
            event("content_block_stop", '{"index":0}'),
            event(
                "message_delta", '{"delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}}'
            ),
            event("message_stop", "{}"),
        ]
    )
    events = await decode(AnthropicMessages(), body)
    assert events == [
        Delta('{"city'),
        Delta('":"Oslo"}'),
        Finish("stop", TokenUsage(3, 5)),
    ]


def test_logprobs_and_a_reserved_tool_name_are_refused_one_call_is_disable_parallel() -> None:
    logprobs = ChatRequest("claude", (), max_tokens=1, logprobs=True)
    with pytest.raises(ProviderError) as caught:
        AnthropicMessages().request_body(logprobs, stream=False)
    assert caught.value.param == "logprobs"
    reserved = ChatRequest("claude", (), max_tokens=1, tools=(Tool("json_response"),))
    with pytest.raises(ProviderError) as caught:
        AnthropicMessages().request_body(reserved, stream=False)
    assert caught.value.param == "tools"
    single = ChatRequest(
        "claude", (), max_tokens=1, tools=(Tool("weather"),), parallel_tool_calls=False
    )
    assert AnthropicMessages().request_body(single, stream=False)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }


def event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


STREAM = b"".join(
    [
        event(
            "message_start",
            '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
            '"content":[],"model":"claude","stop_reason":null,'
            '"usage":{"input_tokens":12,"output_tokens":1}}}',
        ),
        event(
            "content_block_start",
            '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        ),
        event("ping", '{"type":"ping"}'),
        event(
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}',
        ),
        event(
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" you"}}',
        ),
        event("content_block_stop", '{"type":"content_block_stop","index":0}'),
        event(
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":2}}',
        ),
        event(
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},'
            '"usage":{"output_tokens":3}}',
        ),
        event("message_stop", '{"type":"message_stop"}'),
    ]
)


@pytest.mark.parametrize("size", [1, 5, len(STREAM)])
async def test_a_stream_is_deltas_then_a_finish_with_cumulative_output_tokens(
    size: int, decode: Decode
) -> None:
    assert await decode(AnthropicMessages(), STREAM, size) == [
        Delta("Hi"),
        Delta(" you"),
        Finish("length", TokenUsage(12, 3)),
    ]


async def test_tool_use_blocks_stream_as_tool_call_deltas(decode: Decode) -> None:
    body = b"".join(
        [
            event("message_start", '{"message":{"usage":{"input_tokens":5}}}'),
            event(
                "content_block_start",
                '{"index":0,"content_block":{"type":"text","text":""}}',
            ),
            event("content_block_delta", '{"index":0,"delta":{"type":"text_delta","text":"ok"}}'),
            event(
                "content_block_start",
                '{"index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather",'
                '"input":{}}}',
            ),
            event(
                "content_block_delta",
                '{"index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":"}}',
            ),
            event(
                "message_delta", '{"delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}'
            ),
            event("message_stop", "{}"),
        ]
    )
    assert await decode(AnthropicMessages(), body) == [
        Delta("ok"),
        ToolCallDelta(0, "toolu_1", "weather", ""),
        ToolCallDelta(0, "", "", '{"city":'),
        Finish("tool_calls", TokenUsage(5, 9)),
    ]


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("overloaded_error", Failure.UNAVAILABLE),
        ("rate_limit_error", Failure.RATE_LIMITED),
        ("api_error", Failure.ERROR),
        ("something_new", Failure.ERROR),
    ],
)
async def test_an_error_event_mid_stream_is_classified(
    kind: str, failure: Failure, decode: Decode
) -> None:
    body = STREAM[: STREAM.index(b"event: ping")] + event(
        "error", f'{{"type":"error","error":{{"type":"{kind}"}}}}'
    )
    with pytest.raises(ProviderError) as caught:
        await decode(AnthropicMessages(), body)
    assert caught.value.failure is failure


async def test_a_stream_without_message_stop_is_incomplete(decode: Decode) -> None:
    cut = STREAM[: STREAM.index(b"event: message_stop")]
    with pytest.raises(ProviderError, match="before the answer was complete"):
        await decode(AnthropicMessages(), cut)


def test_a_whole_message_and_the_model_list() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "text", "text": "sun"},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Rome"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 2},
    }
    assert AnthropicMessages().completion(message) == Completion(
        "sun",
        "tool_calls",
        TokenUsage(4, 2),
        (ToolCallPart("toolu_1", "weather", '{"city":"Rome"}'),),
    )
    page = {
        "data": [{"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku"}],
        "has_more": False,
    }
    assert AnthropicMessages().models(page) == [ModelInfo("claude-haiku-4-5", "anthropic")]
