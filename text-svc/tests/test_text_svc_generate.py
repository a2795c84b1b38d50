"""Generate and GenerateStream against each provider's stand-in, through the real gRPC server."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpc_stubs.text.v1 import text_pb2
from svc_common.errors import from_rpc_error

from .conftest import ANTHROPIC_KEY, OPENAI_KEY, USER, StartTextSvc, ask

pytestmark = pytest.mark.timeout(30)

# "Echo: hello there 4 5" is five words; the stand-ins count a word as a token.
REPLY = "Echo: hello there 4 5"


async def collect(call: grpc.aio.UnaryStreamCall) -> list[text_pb2.GenerateStreamResponse]:
    return [message async for message in call]


async def test_openai_generate_uses_the_platform_key_and_reports_usage(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    response = await svc.stub.Generate(ask(request_id="req-1"), metadata=svc.metadata(), timeout=10)

    assert (response.content, response.finish_reason) == (REPLY, "stop")
    assert (response.provider, response.model) == ("openai", "gpt-4o-mini")
    # The id is minted by text-svc, never the caller's "req-1" (issue 7).
    assert len(response.id) == 32 and response.id != "req-1"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2, 5)
    assert response.balance_micros == -1  # no billing-svc: no hold
    record = svc.openai.last_request
    assert record is not None
    assert (record.key, record.model, record.outcome) == (OPENAI_KEY, "gpt-4o-mini", "completed")

    event = await svc.next_usage_event()
    assert (event.event_id, event.user_id, event.mode, event.outcome) == (
        response.id,
        USER,
        "member",
        "success",
    )
    assert (event.provider, event.model, event.hold_id) == ("openai", "gpt-4o-mini", "")
    assert (event.input_tokens, event.output_tokens) == (2, 5)


@pytest.mark.parametrize(
    ("provider", "model", "stand_in", "key"),
    [
        ("openai", "gpt-4o-mini", "openai", OPENAI_KEY),
        ("anthropic", "claude-haiku-4-5", "anthropic", ANTHROPIC_KEY),
        ("ollama", "llama3.2:latest", "ollama", None),
        # An OpenAI-compatible server without a key: the SDK's placeholder is sent.
        ("vllm", "llama3.2:latest", "ollama", "not-needed"),
    ],
)
async def test_each_provider_generates_and_streams(
    start_text_svc: StartTextSvc, provider: str, model: str, stand_in: str, key: str | None
) -> None:
    svc = await start_text_svc(default_provider=provider, default_model=model)
    upstream = getattr(svc, stand_in)

    # Every sampling parameter each provider takes, so their mapping reaches the wire.
    options = {"temperature": 0.5, "top_p": 0.9, "stop": ["zzz"], "seed": 7}
    response = await svc.stub.Generate(ask(**options), metadata=svc.metadata(), timeout=10)
    assert (response.content, response.provider, response.model) == (REPLY, provider, model)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2, 5)

    messages = await collect(
        svc.stub.GenerateStream(
            ask(request_id="s-1", **options), metadata=svc.metadata(), timeout=10
        )
    )
    start, *deltas, finish = messages
    assert (start.start.provider, start.start.model) == (provider, model)
    assert len(start.start.id) == 32 and start.start.id != "s-1"  # minted by text-svc
    assert start.start.balance_micros == -1
    assert "".join(d.delta.content for d in deltas) == REPLY
    assert finish.finish.finish_reason == "stop"
    assert (finish.finish.usage.input_tokens, finish.finish.usage.output_tokens) == (2, 5)

    records = upstream.requests
    assert [(r.model, r.stream, r.outcome) for r in records] == [
        (model, False, "completed"),
        (model, True, "completed"),
    ]
    if key is not None:
        assert {r.key for r in records} == {key}
    events = [await svc.next_usage_event(), await svc.next_usage_event()]
    assert [(e.provider, e.outcome, e.output_tokens) for e in events] == [
        (provider, "success", 5),
        (provider, "success", 5),
    ]


async def test_anthropic_gets_system_prompt_and_a_max_tokens(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(default_provider="anthropic", default_model="claude-haiku-4-5")
    request = text_pb2.GenerateRequest(
        messages=[
            text_pb2.ChatMessage(role="system", content="Be brief."),
            text_pb2.ChatMessage(role="user", content="hello there"),
        ],
        max_tokens=3,
    )
    response = await svc.stub.Generate(request, metadata=svc.metadata(), timeout=10)
    # max_tokens reached the provider: the reply is cut to three words.
    assert (response.content, response.finish_reason) == ("Echo: hello there", "length")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 3)


async def test_a_call_without_a_service_token_is_unauthenticated(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(), metadata=(("x-user-id", USER),), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert svc.openai.requests == []


async def test_a_call_for_no_user_is_refused(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(), metadata=svc.metadata(user=""), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-user-id" in (caught.value.details() or "")


async def test_health_answers_serving(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc()
    health = health_pb2_grpc.HealthStub(svc.channel)
    for service in ("", "text.v1.TextService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("request_fields", "param", "words"),
    [
        ({"messages": []}, "messages", "must not be empty"),
        (
            {"messages": [text_pb2.ChatMessage(role="robot", content="hi")]},
            "messages[0].role",
            "system, user, assistant or tool",  # issue 9: tool messages are taken
        ),
        ({"temperature": 2.5}, "temperature", "between 0 and 2"),
        ({"top_p": 1.5}, "top_p", "between 0 and 1"),
        ({"max_tokens": 0}, "max_tokens", "between 1 and"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ],
)
async def test_invalid_requests_say_what_to_change(
    start_text_svc: StartTextSvc, request_fields: dict[str, object], param: str, words: str
) -> None:
    svc = await start_text_svc(models="gpt-4o-mini,gpt-4o")
    fields = {"messages": [text_pb2.ChatMessage(role="user", content="hi")], **request_fields}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(
            text_pb2.GenerateRequest(**fields), metadata=svc.metadata(), timeout=10
        )
    remote = from_rpc_error(caught.value)
    assert remote.code == grpc.StatusCode.INVALID_ARGUMENT
    assert remote.param == param
    assert words in remote.message
    assert svc.openai.requests == []
    assert await svc.usage_event_count() == 0


async def test_a_model_not_offered_is_not_found(start_text_svc: StartTextSvc) -> None:
    # Issue 9: OpenAI's answer to an unknown model is a 404 model_not_found (was a 400).
    svc = await start_text_svc(models="gpt-4o-mini,gpt-4o")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(model="gpt-nope"), metadata=svc.metadata(), timeout=10)
    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.param) == (grpc.StatusCode.NOT_FOUND, "model")
    assert "use one of: gpt-4o-mini, gpt-4o" in remote.message
    assert svc.openai.requests == []


async def test_anthropic_temperature_range_is_zero_to_one(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(default_provider="anthropic", default_model="claude-haiku-4-5")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(temperature=1.5), metadata=svc.metadata(), timeout=10)
    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.param) == (grpc.StatusCode.INVALID_ARGUMENT, "temperature")
    assert "between 0 and 1 for anthropic" in remote.message


async def test_default_model_name_and_a_minted_id_whatever_the_metadata(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc(models="gpt-4o-mini,gpt-4o")
    response = await svc.stub.Generate(
        ask(model="default"), metadata=svc.metadata(request_id="md-7"), timeout=10
    )
    assert response.model == "gpt-4o-mini"
    assert len(response.id) == 32 and response.id != "md-7"  # a fresh uuid4 hex, minted here
    again = await svc.stub.Generate(
        ask(model="gpt-4o"), metadata=svc.metadata(request_id="md-7"), timeout=10
    )
    assert again.model == "gpt-4o"
    assert len(again.id) == 32 and again.id != response.id
