"""The Responses API, stateless (issue 9): the official openai SDK's `responses.create` and
`responses.stream` against the gateway, on the OpenAI and Anthropic providers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from harness import Platform
from test_tools import WEATHER_ARGUMENTS, WEATHER_SCHEMA, use_anthropic

PREFIXES = ["/api/text-proxy/v1", "/api/llm-proxy/v1"]
TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": WEATHER_SCHEMA,
    "strict": True,
}


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_create_with_text(platform: Platform, prefix: str) -> None:
    await platform.grant("alice", 5_000_000)
    client = platform.client("alice", prefix=prefix)
    response = await client.responses.create(
        model="gpt-4o-mini", input="hello there", instructions="be brief", max_output_tokens=50
    )
    assert response.object == "response" and response.status == "completed"
    assert response.output_text.startswith("Echo: hello there")
    assert response.usage is not None and response.usage.output_tokens == 20
    assert response.usage.total_tokens == response.usage.input_tokens + 20
    sent = platform.openai.last_request.body
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["max_completion_tokens"] == 50


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_function_tool_loop_created_and_streamed(platform: Platform, provider: str) -> None:
    await platform.grant("alice", 5_000_000)
    if provider == "anthropic":
        await use_anthropic(platform, "alice")
    client = platform.client("alice")
    question: Any = [{"role": "user", "content": [{"type": "input_text", "text": "weather?"}]}]
    first = await client.responses.create(model="default", input=question, tools=[TOOL])
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == WEATHER_ARGUMENTS

    async with client.responses.stream(model="default", input=question, tools=[TOOL]) as stream:
        kinds = [event.type async for event in stream]
        streamed = await stream.get_final_response()
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (streamed_call,) = streamed.output
    assert streamed_call.type == "function_call"
    assert json.loads(streamed_call.arguments) == WEATHER_ARGUMENTS

    history = [
        *question,
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    async with client.responses.stream(model="default", input=history, tools=[TOOL]) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert final.output_text.startswith("Echo: sunny")
    assert final.usage is not None and final.usage.output_tokens == 20


async def test_text_format_json_schema(platform: Platform) -> None:
    await platform.grant("alice", 5_000_000)
    client = platform.client("alice")
    response = await client.responses.create(
        model="gpt-4o-mini",
        input="weather?",
        text={
            "format": {"type": "json_schema", "name": "w", "schema": WEATHER_SCHEMA, "strict": True}
        },
    )
    assert json.loads(response.output_text) == WEATHER_ARGUMENTS
    sent = platform.openai.last_request.body["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": WEATHER_SCHEMA, "strict": True},
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"background": True}, "background"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"conversation": "conv_1"}, "conversation"),
    ],
)
async def test_what_is_not_offered_is_a_400(
    platform: Platform, fields: dict[str, Any], param: str
) -> None:
    await platform.grant("alice", 5_000_000)
    with pytest.raises(openai.BadRequestError) as caught:
        await platform.client("alice").responses.create(model="gpt-4o-mini", input="hi", **fields)
    assert caught.value.body["param"] == param
    assert "not offered" in caught.value.body["message"]


async def test_an_image_names_the_multimodal_route(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as http:
        response = await http.post(
            "/api/text-proxy/v1/responses",
            headers=platform.auth("alice"),
            json={
                "model": "gpt-4o-mini",
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
                    }
                ],
            },
        )
    assert response.status_code == 400
    assert "/api/multimodal-proxy/v1/chat/completions" in response.json()["error"]["message"]
