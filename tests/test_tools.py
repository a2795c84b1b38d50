"""Function calling, structured output and logprobs end to end (issue 9): the official openai SDK
→ gateway → text-svc → the OpenAI and Anthropic stand-ins, which call tools as real models do."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from harness import PLATFORM_ANTHROPIC_KEY, Platform
from pydantic import BaseModel

from provider_stand_ins.tools import json_pieces

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
WEATHER_ARGUMENTS = {"city": "x", "unit": "celsius", "days": 1}
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": WEATHER_SCHEMA,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a city",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
QUESTION: Any = [{"role": "user", "content": "what is the weather in Paris"}]


async def use_anthropic(platform: Platform, user: str) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as http:
        response = await http.put(
            "/api/settings/llm/text",
            json={"provider": "anthropic", "model": "claude-3-5-haiku-latest", "mode": "member"},
            headers=platform.auth(user),
        )
    assert response.status_code == 200, response.text


def answered(history: list[Any], call_id: str, name: str, arguments: str) -> list[Any]:
    """The history after the model's call and the tool's result."""
    return [
        *history,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny and 21 degrees"},
    ]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_tool_loop_call_result_answer(platform: Platform, provider: str) -> None:
    await platform.grant("alice", 5_000_000)
    if provider == "anthropic":
        await use_anthropic(platform, "alice")
    client = platform.client("alice")
    first = await client.chat.completions.create(model="default", messages=QUESTION, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGUMENTS
    # Tool-call arguments are output: the provider's exact count, one token per piece.
    assert first.usage is not None
    assert first.usage.completion_tokens == len(json_pieces(WEATHER_ARGUMENTS))

    history = answered(QUESTION, call.id, call.function.name, call.function.arguments)
    final = await client.chat.completions.create(model="default", messages=history, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content.startswith("Echo: sunny and 21 degrees")
    if provider == "anthropic":
        # Translated both ways: tool_use in the assistant turn, tool_result in a user turn.
        body = platform.anthropic.last_request.body
        assert body["messages"][1]["content"][0]["type"] == "tool_use"
        assert body["messages"][2]["content"][0]["type"] == "tool_result"
        assert body["tools"][0]["input_schema"] == WEATHER_SCHEMA


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_streamed_tool_loop(platform: Platform, provider: str) -> None:
    await platform.grant("alice", 5_000_000)
    if provider == "anthropic":
        await use_anthropic(platform, "alice")
    client = platform.client("alice")
    stream = await client.chat.completions.create(
        model="default",
        messages=QUESTION,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    calls = [
        c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls
    ]
    # As OpenAI streams them: the first piece names the call, the rest add arguments.
    head = calls[0][0]
    assert (head.index, head.type, head.function.name, head.function.arguments) == (
        0,
        "function",
        "get_weather",
        "",
    )
    assert head.id
    assert len(calls) > 2
    assert all(c[0].id is None and c[0].function.name is None for c in calls[1:])
    arguments = "".join(c[0].function.arguments for c in calls)
    assert json.loads(arguments) == WEATHER_ARGUMENTS
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == len(json_pieces(WEATHER_ARGUMENTS))

    # The SDK's own accumulation reads the same call.
    async with client.beta.chat.completions.stream(
        model="default", messages=QUESTION, tools=TOOLS, tool_choice="required"
    ) as sdk_stream:
        completion = await sdk_stream.get_final_completion()
    (call,) = completion.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == WEATHER_ARGUMENTS

    history = answered(QUESTION, head.id, "get_weather", arguments)
    stream = await client.chat.completions.create(
        model="default", messages=history, tools=TOOLS, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("Echo: sunny and 21 degrees")


async def test_tool_choice_none_and_named(platform: Platform) -> None:
    await platform.grant("alice", 5_000_000)
    client = platform.client("alice")
    plain = await client.chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, tools=TOOLS, tool_choice="none"
    )
    assert plain.choices[0].finish_reason == "stop"
    assert plain.choices[0].message.content.startswith("Echo:")
    named = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    assert named.choices[0].message.tool_calls[0].function.name == "get_time"
    sent = platform.openai.last_request.body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert sent["parallel_tool_calls"] is False


class Weather(BaseModel):
    city: str
    unit: str
    days: int


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_parse_a_pydantic_model(platform: Platform, provider: str) -> None:
    await platform.grant("alice", 5_000_000)
    if provider == "anthropic":
        await use_anthropic(platform, "alice")
    client = platform.client("alice")
    completion = await client.chat.completions.parse(
        model="default", messages=QUESTION, response_format=Weather
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    assert completion.choices[0].finish_reason == "stop"
    if provider == "anthropic":
        # The established translation: a forced tool whose schema is the response schema.
        body = platform.anthropic.last_request.body
        assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
        assert body["tools"][0]["input_schema"]["required"] == ["city", "unit", "days"]
    else:
        assert platform.openai.last_request.body["response_format"]["json_schema"]["strict"]
    stream = await client.chat.completions.create(
        model="default", messages=QUESTION, response_format={"type": "json_object"}, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert isinstance(json.loads(text), dict)


async def test_logprobs_where_given_and_a_400_where_not(platform: Platform) -> None:
    await platform.grant("alice", 5_000_000)
    client = platform.client("alice")
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, logprobs=True, top_logprobs=2
    )
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert len(content[0].top_logprobs) == 2
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, logprobs=True, stream=True
    )
    tokens = [
        t.token
        async for c in stream
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content or ()
    ]
    assert "".join(tokens).startswith("Echo: what is the weather")

    await use_anthropic(platform, "alice")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="default", messages=QUESTION, logprobs=True)
    assert caught.value.body["param"] == "logprobs"
    assert "Anthropic models do not return logprobs" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"functions": [{"name": "f"}]}, "functions", "send 'tools'"),
        ({"function_call": "auto"}, "function_call", "send 'tool_choice'"),
        ({"logit_bias": {"1": 1}}, "logit_bias", "not offered"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction", "not offered"),
        ({"audio": {"voice": "alloy"}}, "audio", "not offered"),
        ({"modalities": ["text", "audio"]}, "modalities", "only text"),
        ({"web_search_options": {}}, "web_search_options", "not offered"),
        ({"service_tier": "flex"}, "service_tier", "not offered"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "json_schema"),
        ({"tools": [{"type": "custom", "custom": {}}]}, "tools[0].type", "only 'function'"),
        ({"tool_choice": "sometimes"}, "tool_choice", "'auto', 'none', 'required'"),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"top_logprobs": 2}, "top_logprobs", "needs 'logprobs'"),
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_it(
    platform: Platform, fields: dict[str, Any], param: str, says: str
) -> None:
    await platform.grant("alice", 5_000_000)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as http:
        response = await http.post(
            "/api/text-proxy/v1/chat/completions",
            headers=platform.auth("alice"),
            json={"model": "gpt-4o-mini", "messages": QUESTION, **fields},
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert says in error["message"]
    assert not [r for r in platform.openai.requests if r.path.endswith("/chat/completions")]


async def test_user_metadata_and_store_are_dropped(platform: Platform) -> None:
    await platform.grant("alice", 5_000_000)
    reply = await platform.client("alice").chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, user="u1", metadata={"k": "v"}, store=True
    )
    assert reply.choices[0].message.content.startswith("Echo:")
    sent = platform.openai.last_request.body
    assert not {"user", "metadata", "store"} & set(sent)


async def test_the_anthropic_stand_in_speaks_tool_use_to_the_anthropic_sdk(
    platform: Platform,
) -> None:
    """The translation is tested against a stand-in the official anthropic SDK reads as it reads
    Anthropic: tool_use blocks, input_json_delta, stop_reason tool_use."""
    client = anthropic.AsyncAnthropic(
        api_key=PLATFORM_ANTHROPIC_KEY, base_url=platform.anthropic.base_url, max_retries=0
    )
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    async with client:
        message = await client.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=100, messages=QUESTION, tools=tools
        )
        assert message.stop_reason == "tool_use"
        (block,) = message.content
        assert block.type == "tool_use" and block.input == WEATHER_ARGUMENTS
        async with client.messages.stream(
            model="claude-3-5-haiku-latest", max_tokens=100, messages=QUESTION, tools=tools
        ) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert final.content[0].input == WEATHER_ARGUMENTS  # type: ignore[union-attr]


async def test_models_unknown_model_and_trailing_slash(platform: Platform) -> None:
    await platform.grant("alice", 5_000_000)
    client = platform.client("alice")
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-nope", messages=QUESTION)
    assert caught.value.body["code"] == "model_not_found"
    model = await client.models.retrieve("gpt-4o-mini")
    assert (model.id, model.object) == ("gpt-4o-mini", "model")
    assert model.created > 1_600_000_000  # a real time, not 0
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-nope")
    assert caught.value.body["code"] == "model_not_found"
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as http:
        response = await http.post(
            "/api/text-proxy/v1/chat/completions/",
            headers=platform.auth("alice"),
            json={"model": "gpt-4o-mini", "messages": QUESTION},
        )
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
