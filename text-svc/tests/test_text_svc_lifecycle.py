"""Start-up and shutdown: the process serves until SIGTERM; in-flight streams end cleanly and
their usage events are flushed before the server is gone."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import OPENAI_KEY, SECRET, StartTextSvc, ask

pytestmark = pytest.mark.timeout(30)


async def test_stop_cancels_streams_past_the_grace_period_and_flushes_usage(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    svc.openai.set_behaviour(chunks=10_000, token_delay_s=0.01)
    call = svc.stub.GenerateStream(ask(request_id="late-1"), metadata=svc.metadata())
    start = await call.read()
    await call.read()  # first delta

    await svc.server.stop(0.2)

    # stop() returned: the usage event is already on the stream, the upstream was closed.
    assert await svc.usage_event_count() == 1
    event = await svc.next_usage_event(timeout_s=0.1)
    assert (event.event_id, event.outcome) == (start.start.id, "client_disconnect")
    await svc.openai.wait_for(lambda: svc.openai.stats["streams_cancelled"] == 1)
    with pytest.raises(grpc.aio.AioRpcError):
        while True:  # the deltas already sent, then the end of the call
            await call.read()


async def test_a_stream_that_ends_within_the_grace_period_completes(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    svc.openai.set_behaviour(chunks=5, token_delay_s=0.05)
    call = svc.stub.GenerateStream(ask(), metadata=svc.metadata())
    await call.read()  # start: the call is in flight

    stopping = asyncio.create_task(svc.server.stop(10))
    messages = []
    while (message := await call.read()) is not grpc.aio.EOF:
        messages.append(message)
    await stopping

    assert messages[-1].finish.finish_reason == "stop"
    event = await svc.next_usage_event(timeout_s=0.1)
    assert event.outcome == "success"


async def test_the_process_serves_until_sigterm(
    redis_url: str, redis_prefix: str, stand_ins: dict[str, object]
) -> None:
    env = {
        **os.environ,
        "TEXT_SVC_SERVICE_TOKEN_SECRET": SECRET,
        "TEXT_SVC_LISTEN": "127.0.0.1:0",
        "TEXT_SVC_OPENAI_API_KEY": OPENAI_KEY,
        "TEXT_SVC_REDIS_URL": redis_url,
        "TEXT_SVC_USAGE_STREAM": f"{redis_prefix}usage-events",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "text_svc", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
            assert line, "text-svc exited before it was ready"
            assert OPENAI_KEY not in line
            if match := re.search(r"text-svc ready on port (\d+)", line):
                port = int(match.group(1))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="text.v1.TextService"), timeout=5
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
