"""GenerateStream: cancellation closes the upstream stream, and every ending is billed once."""

from __future__ import annotations

import math

import grpc
import pytest

from grpc_stubs.text.v1 import text_pb2
from provider_stand_ins.behaviour import reply_text
from svc_common.errors import UPSTREAM_ERROR, UPSTREAM_TIMEOUT, from_rpc_error

from .conftest import StartTextSvc, ask

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"), ("ollama", "llama3:latest")],
)
async def test_a_cancelled_stream_closes_upstream_and_bills_what_was_generated(
    start_text_svc: StartTextSvc, provider: str, model: str
) -> None:
    svc = await start_text_svc(default_provider=provider, default_model=model)
    upstream = getattr(svc, provider)
    upstream.set_behaviour(chunks=10_000, token_delay_s=0.005)

    call = svc.stub.GenerateStream(ask(request_id="gone-1"), metadata=svc.metadata())
    start = await call.read()
    assert len(start.start.id) == 32 and start.start.id != "gone-1"  # minted by text-svc
    received = [(await call.read()).delta.content for _ in range(3)]
    call.cancel()

    await upstream.wait_for(lambda: upstream.stats["streams_cancelled"] == 1)
    event = await svc.next_usage_event()
    assert (event.event_id, event.outcome, event.mode, event.hold_id) == (
        start.start.id,
        "client_disconnect",
        "member",
        "",
    )
    # No usage arrived from the provider: at least the deltas seen, input from the upper bound.
    assert event.output_tokens >= len(received)
    assert event.output_tokens < 10_000
    assert event.input_tokens == len(b"hello there") + 16
    assert await svc.usage_event_count() == 1


async def test_deltas_that_arrived_together_go_out_as_one_message(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    svc.openai.set_behaviour(chunks=20)  # every chunk written at once

    kinds: list[str | None] = []
    deltas: list[str] = []
    async for message in svc.stub.GenerateStream(ask(), metadata=svc.metadata(), timeout=10):
        kinds.append(message.WhichOneof("event"))
        if message.HasField("delta"):
            deltas.append(message.delta.content)
    # The start and the finish stay messages of their own, in order, around the same text.
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("finish") == 1
    assert "".join(deltas) == reply_text("hello there", 20)
    assert len(deltas) < 20  # what was read together was sent together
    event = await svc.next_usage_event()
    assert (event.outcome, event.output_tokens) == ("success", 20)


async def test_a_delta_goes_out_as_soon_as_it_arrives(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc()
    svc.openai.set_behaviour(chunks=3, token_delay_s=1.0)

    call = svc.stub.GenerateStream(ask(), metadata=svc.metadata(), timeout=10)
    assert (await call.read()).HasField("start")
    # The next word is a second away: the first is not held back to be merged with it.
    assert (await call.read()).delta.content == "Echo:"
    call.cancel()
    event = await svc.next_usage_event()
    assert event.outcome == "client_disconnect"


async def test_a_stream_broken_by_the_provider_is_billed_as_upstream_error(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    svc.openai.set_behaviour(chunks=50, disconnect_after_chunks=4)

    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in svc.stub.GenerateStream(ask(), metadata=svc.metadata(), timeout=10):
            if message.HasField("delta"):
                received.append(message.delta.content)
    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.reason) == (grpc.StatusCode.UNAVAILABLE, UPSTREAM_ERROR)
    # Every word the provider sent before the break reached the caller (the stand-in writes
    # them at once, so they may come as fewer, merged deltas).
    assert "".join(received) == "Echo: hello there 4"
    # Output had started: no retry.
    assert len(svc.openai.requests) == 1
    event = await svc.next_usage_event()
    # The provider's usage never came: one token per upstream delta (4 words), or a token per
    # four characters.
    counted = max(4, math.ceil(len("".join(received)) / 4))
    assert (event.outcome, event.output_tokens) == ("upstream_error", counted)


async def test_a_mid_stream_error_event_is_an_upstream_error(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(default_provider="anthropic", default_model="claude-haiku-4-5")
    svc.anthropic.set_behaviour(chunks=50, stream_error_after_chunks=2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [m async for m in svc.stub.GenerateStream(ask(), metadata=svc.metadata(), timeout=10)]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    event = await svc.next_usage_event()
    assert event.outcome == "upstream_error"
    assert event.output_tokens >= 2


async def test_a_stalled_stream_hits_the_idle_timeout(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(upstream_idle_timeout_s=0.2)
    svc.openai.set_behaviour(chunks=3, token_delay_s=2.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [m async for m in svc.stub.GenerateStream(ask(), metadata=svc.metadata(), timeout=20)]
    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, UPSTREAM_TIMEOUT)
    await svc.openai.wait_for(lambda: svc.openai.stats["streams_cancelled"] == 1)


async def test_stream_usage_event_carries_the_provider_usage(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc()
    request = text_pb2.GenerateRequest(
        messages=[
            text_pb2.ChatMessage(role="system", content="Be brief."),
            text_pb2.ChatMessage(role="user", content="hello there"),
        ],
        request_id="s-usage",
    )
    messages = [m async for m in svc.stub.GenerateStream(request, metadata=svc.metadata())]
    usage = messages[-1].finish.usage
    assert (usage.input_tokens, usage.output_tokens) == (4, 5)
    event = await svc.next_usage_event()
    assert (event.event_id, event.outcome, event.input_tokens, event.output_tokens) == (
        messages[0].start.id,
        "success",
        4,
        5,
    )
    assert event.ended_at_ms >= event.started_at_ms > 0
