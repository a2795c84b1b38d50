"""image-svc sends an AUTOMATIC1111 endpoint one job at a time: A1111 cannot take back a queued
txt2img, so a job whose caller leaves while it waits must never reach it."""

from __future__ import annotations

from typing import Any

import pytest
from image_svc.providers.submission_line import SubmissionLines

from grpc_stubs.image.v1 import image_pb2

StartImageSvc = Any  # conftest's start_image_svc fixture
MODEL = "v1-5-pruned-emaonly"


def request(steps: int) -> image_pb2.GenerateRequest:
    return image_pb2.GenerateRequest(
        model=MODEL, prompt="a lighthouse at dusk", size="256x256", steps=steps
    )


async def test_a_job_cancelled_while_waiting_in_line_never_reaches_automatic1111(
    start_image_svc: StartImageSvc, stand_ins: dict
) -> None:
    svc = await start_image_svc(default_provider="automatic1111", default_model=MODEL)
    a1111 = stand_ins["automatic1111"]
    a1111.set_behaviour(step_delay_s=0.05)

    def txt2img_calls() -> int:
        return sum(r.path == "/sdapi/v1/txt2img" for r in a1111.requests)

    first = svc.stub.GenerateStream(request(12), metadata=svc.metadata(), timeout=30)
    async for message in first:
        if message.WhichOneof("event") == "progress":
            break
    second = svc.stub.GenerateStream(request(12), metadata=svc.metadata(), timeout=30)
    async for message in second:
        if message.WhichOneof("event") != "start":
            break
    assert message.WhichOneof("event") == "queued" and message.queued.position == 1
    second.cancel()

    cancelled = await svc.next_usage_event()
    assert cancelled.outcome == "client_disconnect" and cancelled.images == 0
    events = [m.WhichOneof("event") async for m in first]
    assert events[-1] == "finish"
    finished = await svc.next_usage_event()
    assert finished.outcome == "success" and finished.images == 1
    assert txt2img_calls() == 1
    assert not any(r.path == "/sdapi/v1/interrupt" for r in a1111.requests)


async def test_waiting_jobs_see_their_position_fall_and_go_one_at_a_time() -> None:
    lines = SubmissionLines()
    running = lines.join("http://a1111:7860/", "user:pw")
    waiting = [lines.join("http://a1111:7860", "user:pw") for _ in range(2)]
    elsewhere = lines.join("http://a1111:7860", "other:pw")  # other credentials: another line
    assert running.running and elsewhere.running
    assert [t.position() for t in waiting] == [1, 2]

    positions = waiting[1].positions()
    assert await anext(positions) == 2
    waiting[0].leave()  # given up while waiting: never ran
    assert await anext(positions) == 1
    running.leave()
    with pytest.raises(StopAsyncIteration):
        await anext(positions)
    assert waiting[1].running
    waiting[1].leave()
    elsewhere.leave()
    assert len(lines) == 0
