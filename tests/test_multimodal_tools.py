"""Tools and structured output on the multimodal route as on the text route (issue 10): the
official openai SDK → gateway → multimodal-svc → the OpenAI and Anthropic stand-ins, with an
image in the first user message."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from harness import Platform
from image_server import data_url, image_bytes
from test_multimodal_path import configure
from test_tools import QUESTION, TOOLS, WEATHER_ARGUMENTS, WEATHER_SCHEMA, Weather, answered

from provider_stand_ins.tools import json_pieces

PREFIX = "/api/multimodal-proxy/v1"


def with_image() -> list[Any]:
    url = data_url(image_bytes("PNG", (8, 8), "red"), "image/png")
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": QUESTION[0]["content"]},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
            ],
        }
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_tool_loop_with_an_image(platform: Platform, provider: str, stream: bool) -> None:
    await platform.grant("ana", 5_000_000)
    await configure(platform, "ana", provider)
    client = platform.client("ana", prefix=PREFIX)
    question = with_image()
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="default",
                messages=question,
                tools=TOOLS,
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        calls = [
            c.choices[0].delta.tool_calls
            for c in chunks
            if c.choices and c.choices[0].delta.tool_calls
        ]
        head = calls[0][0]
        assert (head.index, head.function.name) == (0, "get_weather") and head.id
        assert len(calls) > 2
        arguments = "".join(c[0].function.arguments or "" for c in calls)
        call_id, usage = head.id, chunks[-1].usage
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        first = await client.chat.completions.create(
            model="default", messages=question, tools=TOOLS
        )
        (call,) = first.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        call_id, arguments, usage = call.id, call.function.arguments, first.usage
        finish = first.choices[0].finish_reason
    assert finish == "tool_calls"
    assert json.loads(arguments) == WEATHER_ARGUMENTS
    # Tool-call arguments are output: the provider's count, one token per piece.
    assert usage is not None and usage.completion_tokens == len(json_pieces(WEATHER_ARGUMENTS))
    if provider == "anthropic":
        body = platform.anthropic.last_request.body
        assert body["tools"][0]["input_schema"] == WEATHER_SCHEMA
        assert body["messages"][0]["content"][1]["type"] == "image"
    else:
        body = platform.openai.last_request.body
        assert body["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA
        assert body["messages"][0]["content"][1]["type"] == "image_url"

    history = answered(question, call_id, "get_weather", arguments)
    if stream:
        text = "".join(
            [
                c.choices[0].delta.content or ""
                async for c in await client.chat.completions.create(
                    model="default", messages=history, tools=TOOLS, stream=True
                )
                if c.choices
            ]
        )
    else:
        final = await client.chat.completions.create(model="default", messages=history, tools=TOOLS)
        assert final.choices[0].finish_reason == "stop"
        text = final.choices[0].message.content or ""
    assert text.startswith("Echo: sunny and 21 degrees")
    if provider == "anthropic":
        body = platform.anthropic.last_request.body
        assert body["messages"][1]["content"][0]["type"] == "tool_use"
        assert body["messages"][2]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_parse_a_pydantic_model_about_an_image(platform: Platform, provider: str) -> None:
    await platform.grant("ana", 5_000_000)
    await configure(platform, "ana", provider)
    client = platform.client("ana", prefix=PREFIX)
    completion = await client.chat.completions.parse(
        model="default", messages=with_image(), response_format=Weather
    )
    assert isinstance(completion.choices[0].message.parsed, Weather)
    if provider == "anthropic":
        body = platform.anthropic.last_request.body
        assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    else:
        assert platform.openai.last_request.body["response_format"]["json_schema"]["strict"]


@pytest.mark.parametrize(
    ("provider", "fields", "param", "says"),
    [
        ("anthropic", {"logprobs": True}, "logprobs", "Anthropic models do not return logprobs"),
        ("openai", {"response_format": {"type": "xml"}}, "response_format.type", "json_schema"),
        ("openai", {"tool_choice": "required"}, "tool_choice", "needs tools"),
        (
            "anthropic",
            {"tools": [{"type": "custom", "custom": {}}]},
            "tools[0].type",
            "only 'function'",
        ),
    ],
)
async def test_a_refused_parameter_is_a_400_per_provider(
    platform: Platform, provider: str, fields: dict[str, Any], param: str, says: str
) -> None:
    await platform.grant("ana", 5_000_000)
    await configure(platform, "ana", provider)
    client = platform.client("ana", prefix=PREFIX)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="default", messages=with_image(), extra_body=fields
        )
    assert caught.value.body["param"] == param
    assert says in caught.value.body["message"]
    stand_in = platform.anthropic if provider == "anthropic" else platform.openai
    assert not [r for r in stand_in.requests if r.path.endswith(("/chat/completions", "/messages"))]
