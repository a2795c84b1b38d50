"""OpenAI chat completions (PROTOCOLS.md a): the request body, image parts, tools, and the
data-only SSE stream read into the normalised stream."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import orjson
import pytest

from chat_codecs import (
    ChatRequest,
    Completion,
    Delta,
    Finish,
    ImagePart,
    Message,
    ModelInfo,
    OpenAIChat,
    StreamEvent,
    TextPart,
    TokenUsage,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
)
from upstream import Failure, ProviderError

DONE = b"data: [DONE]\n\n"

Decode = Callable[..., Awaitable[list[StreamEvent]]]

PNG = b"\x89PNG\r\n\x1a\n-not-really-a-png"


def hello(**fields: object) -> ChatRequest:
    return ChatRequest(
        model="gpt-4o-mini",
        messages=(Message.of_text("system", "be brief"), Message.of_text("user", "hi", "ann")),
        **fields,  # type: ignore[arg-type]
    )


def test_a_text_request_is_openais_body() -> None:
    body = OpenAIChat().request_body(
        hello(max_tokens=64, temperature=0.5, stop=("END",), seed=7), stream=False
    )
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi", "name": "ann"},
        ],
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "stop": ["END"],
        "seed": 7,
    }


def test_compatible_servers_get_max_tokens_and_a_stream_asks_for_usage() -> None:
    body = OpenAIChat(compatible=True).request_body(hello(max_tokens=64), stream=True)
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_headers_are_a_bearer_key_with_a_placeholder_when_there_is_none() -> None:
    assert OpenAIChat().headers("sk-1") == {"authorization": "Bearer sk-1"}
    assert OpenAIChat().headers("") == {"authorization": "Bearer not-needed"}


def test_images_are_image_url_parts_as_data_or_https_urls_with_detail() -> None:
    message = Message(
        "user",
        (
            TextPart("what is this?"),
            ImagePart(data=PNG, media_type="image/png", detail="low"),
            ImagePart(url="https://example.com/cat.jpg"),
        ),
    )
    body = OpenAIChat().request_body(ChatRequest("gpt-4o", (message,)), stream=False)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image_url",
                    "image_url": {
                        "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
                        "detail": "low",
                    },
                },
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


def test_tools_tool_calls_and_results_pass_through_in_openais_shapes() -> None:
    weather = Tool("weather", "the weather in a city", {"type": "object", "properties": {}})
    request = ChatRequest(
        "gpt-4o",
        (
            Message.of_text("user", "weather in Paris?"),
            Message("assistant", (ToolCallPart("call_1", "weather", '{"city":"Paris"}'),)),
            Message("tool", (ToolResultPart("call_1", "sunny"),)),
        ),
        tools=(weather,),
        tool_choice="auto",
        response_format={"type": "json_object"},
    )
    body = OpenAIChat().request_body(request, stream=False)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "the weather in a city",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    assert (body["tool_choice"], body["response_format"]) == ("auto", {"type": "json_object"})


STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],'
    b'"usage":null}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}\r\n\r\n'
    b": keep-alive\n\n"
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":null}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 7, len(STREAM)])
async def test_a_stream_is_deltas_then_a_finish_with_the_usage_chunk(
    size: int, decode: Decode
) -> None:
    assert await decode(OpenAIChat(), STREAM, size) == [
        Delta("Hel"),
        Delta("lo"),
        Finish("length", TokenUsage(9, 2)),
    ]


async def test_tool_call_deltas_are_normalised(decode: Decode) -> None:
    body = (
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1",'
        b'"type":"function","function":{"name":"weather","arguments":""}}]}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
        b'"function":{"arguments":"{\\"city\\":"}}]}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    assert await decode(OpenAIChat(), body) == [
        ToolCallDelta(0, "call_1", "weather", ""),
        ToolCallDelta(0, "", "", '{"city":'),
        Finish("tool_calls", None),
    ]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'data: {"error":{"message":"boom"}}\n\n', "the provider reported an error mid-answer"),
        (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', "before the answer was complete"),
        (b"data: {not json\n\n", "malformed chunk"),
    ],
)
async def test_errors_incomplete_and_malformed_streams_fail(
    body: bytes, detail: str, decode: Decode
) -> None:
    with pytest.raises(ProviderError) as caught:
        await decode(OpenAIChat(), body)
    assert caught.value.failure is Failure.ERROR
    assert detail in caught.value.detail


def test_a_whole_answer_and_the_model_list() -> None:
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    assert OpenAIChat().completion(answer) == Completion("hi", "stop", TokenUsage(3, 1))
    page = {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "owned_by": "openai"}]}
    assert OpenAIChat().models(page) == [ModelInfo("gpt-4o", "openai")]
    with pytest.raises(ProviderError, match="not a chat completion"):
        OpenAIChat().completion({"choices": []})


LOGPROB = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}


async def test_logprobs_are_asked_for_and_read_whole_and_streamed(decode: Decode) -> None:
    body = OpenAIChat().request_body(
        hello(logprobs=True, top_logprobs=2, tools=(Tool("f"),), parallel_tool_calls=False),
        stream=False,
    )
    assert (body["logprobs"], body["top_logprobs"], body["parallel_tool_calls"]) == (True, 2, False)
    answer = {
        "choices": [
            {
                "message": {"content": "Hi"},
                "finish_reason": "stop",
                "logprobs": {"content": [LOGPROB], "refusal": None},
            }
        ]
    }
    assert OpenAIChat().completion(answer).logprobs == (LOGPROB,)
    chunk = {"choices": [{"delta": {"content": "Hi"}, "logprobs": {"content": [LOGPROB]}}]}
    end = {"choices": [{"delta": {}, "finish_reason": "stop"}]}
    stream = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in (chunk, end)) + DONE
    assert await decode(OpenAIChat(), stream) == [Delta("Hi", (LOGPROB,)), Finish("stop", None)]
