"""Upstream failures: what the caller is told, what is retried, when the fallback is used."""

from __future__ import annotations

import grpc
import pytest

from svc_common.errors import (
    PROVIDER_AUTH_FAILED,
    UPSTREAM_RATE_LIMITED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNAVAILABLE,
    from_rpc_error,
)

from .conftest import OPENAI_KEY, StartTextSvc, ask

pytestmark = pytest.mark.timeout(30)


async def test_a_rejected_key_names_the_provider_and_never_the_key(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    svc.openai.state.set_keys({"sk-some-other-key"})
    for call in (svc.stub.Generate, svc.stub.GenerateStream):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            result = call(ask(), metadata=svc.metadata(), timeout=10)
            if isinstance(result, grpc.aio.UnaryStreamCall):
                [_ async for _ in result]
            else:
                await result
        remote = from_rpc_error(caught.value)
        assert (remote.code, remote.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            PROVIDER_AUTH_FAILED,
        )
        assert "openai rejected the API key" in remote.message
        assert "check the platform's openai API key" in remote.message
        # OpenAI's 401 body quotes the key masked (sk-pla****cdef): none of it may pass through.
        assert OPENAI_KEY not in remote.message
        assert OPENAI_KEY[-4:] not in remote.message
        assert "Incorrect API key" not in remote.message
    # Not retried: a bad key stays bad.
    assert [r.outcome for r in svc.openai.requests] == ["rejected", "rejected"]
    event = await svc.next_usage_event()
    assert (event.outcome, event.input_tokens, event.output_tokens) == ("error", 0, 0)


async def test_a_429_with_a_short_retry_after_is_retried(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(max_retries=2, max_retry_wait_s=2.0)
    svc.openai.set_behaviour(error_status=429, fail_times=1, retry_after_s=0.05)

    response = await svc.stub.Generate(ask(), metadata=svc.metadata(), timeout=10)

    assert response.content.startswith("Echo: hello there")
    assert [r.outcome for r in svc.openai.requests] == ["failed", "completed"]


async def test_a_429_with_a_long_retry_after_is_returned_with_the_hint(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc(max_retries=2, max_retry_wait_s=2.0)
    svc.openai.set_behaviour(error_status=429, retry_after_s=30)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(), metadata=svc.metadata(), timeout=10)

    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        UPSTREAM_RATE_LIMITED,
    )
    assert remote.retry_after == 30
    assert "retry after 30s" in remote.message
    assert len(svc.openai.requests) == 1  # not waited for


async def test_a_500_falls_back_to_the_configured_provider(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(max_retries=1, fallback="anthropic:claude-haiku-4-5")
    svc.openai.set_behaviour(error_status=500)

    response = await svc.stub.Generate(ask(request_id="fb-1"), metadata=svc.metadata(), timeout=10)

    assert (response.provider, response.model) == ("anthropic", "claude-haiku-4-5")
    assert [r.outcome for r in svc.openai.requests] == ["failed", "failed"]  # one retry first
    assert [r.outcome for r in svc.anthropic.requests] == ["completed"]
    event = await svc.next_usage_event()
    assert (event.event_id, event.provider, event.model, event.outcome) == (
        response.id,
        "anthropic",
        "claude-haiku-4-5",
        "success",
    )


async def test_a_streamed_503_falls_back_to_another_model(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(max_retries=0, models="gpt-4o-mini,gpt-4o", fallback="gpt-4o")
    svc.openai.set_behaviour(error_status=503, fail_times=1)

    messages = [m async for m in svc.stub.GenerateStream(ask(), metadata=svc.metadata())]

    assert messages[0].start.model == "gpt-4o"
    assert [(r.model, r.outcome) for r in svc.openai.requests] == [
        ("gpt-4o-mini", "failed"),
        ("gpt-4o", "completed"),
    ]


async def test_without_a_fallback_a_503_is_unavailable(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(max_retries=1)
    svc.openai.set_behaviour(error_status=503)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(), metadata=svc.metadata(), timeout=10)
    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.reason) == (grpc.StatusCode.UNAVAILABLE, UPSTREAM_UNAVAILABLE)
    assert len(svc.openai.requests) == 2


async def test_a_provider_that_hangs_times_out(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(upstream_timeout_s=0.5)
    svc.openai.set_behaviour(hang=True)

    for call in (svc.stub.Generate, svc.stub.GenerateStream):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            result = call(ask(), metadata=svc.metadata(), timeout=20)
            if isinstance(result, grpc.aio.UnaryStreamCall):
                [_ async for _ in result]
            else:
                await result
        remote = from_rpc_error(caught.value)
        # Our own timeout (with its reason), well before the caller's 20 s deadline.
        assert (remote.code, remote.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, UPSTREAM_TIMEOUT)
    # The hung requests were abandoned: the stand-in saw the client leave.
    await svc.openai.wait_for(lambda: svc.openai.stats["cancelled"] == 2)


async def test_a_model_the_provider_does_not_know_is_an_invalid_argument(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc(models="gpt-4o-mini,gpt-7-preview")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(model="gpt-7-preview"), metadata=svc.metadata(), timeout=10)
    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.param) == (grpc.StatusCode.INVALID_ARGUMENT, "model")
    assert "gpt-7-preview` does not exist" in remote.message


async def test_an_unreachable_provider_is_unavailable(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(max_retries=0, openai_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.Generate(ask(), metadata=svc.metadata(), timeout=10)
    remote = from_rpc_error(caught.value)
    assert (remote.code, remote.reason) == (grpc.StatusCode.UNAVAILABLE, UPSTREAM_UNAVAILABLE)
    assert "could not reach" in remote.message
