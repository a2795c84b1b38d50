"""The AUTOMATIC1111 stand-in: txt2img run step by step, progress polled while it runs,
interrupt, the one-job-at-a-time queue, models, options and HTTP Basic auth."""

import asyncio
import base64
import io
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from PIL import Image

from provider_stand_ins import StandIn
from provider_stand_ins.automatic1111 import Automatic1111Provider

pytestmark = pytest.mark.timeout(30)

TXT2IMG = {
    "prompt": "a lighthouse",
    "negative_prompt": "blurry",
    "seed": 1234,
    "steps": 8,
    "cfg_scale": 6.5,
    "width": 192,
    "height": 128,
    "sampler_name": "Euler a",
}


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    async with StandIn("automatic1111", step_delay_s=0.001) as running:
        yield running


def provider(stand_in: StandIn) -> Automatic1111Provider:
    assert isinstance(stand_in.app.provider, Automatic1111Provider)
    return stand_in.app.provider


def decode(b64: str) -> Image.Image:
    assert not b64.startswith("data:")
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def test_txt2img_returns_raw_base64_pngs_and_info_as_a_json_string(
    stand_in: StandIn,
) -> None:
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        reply = await http.post("/sdapi/v1/txt2img", json={**TXT2IMG, "batch_size": 2})
        again = await http.post("/sdapi/v1/txt2img", json=TXT2IMG)
    body = reply.json()
    # A1111 puts a grid first when a job makes more than one image.
    grid, *images = [decode(image) for image in body["images"]]
    assert grid.size == (384, 128)
    assert [(image.format, image.size) for image in images] == [("PNG", (192, 128))] * 2
    assert isinstance(body["info"], str)
    info = orjson.loads(body["info"])
    assert (info["seed"], info["all_seeds"], info["steps"]) == (1234, [1234, 1235], 8)
    assert info["sampler_name"] == "Euler a"
    assert body["parameters"]["cfg_scale"] == 6.5
    assert again.json()["images"] == [body["images"][1]]  # same seed, same picture


async def test_progress_moves_while_a_job_runs_with_a_preview(stand_in: StandIn) -> None:
    stand_in.set_behaviour(step_delay_s=0.02)
    queue = provider(stand_in).queue
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        idle = (await http.get("/sdapi/v1/progress")).json()
        assert (idle["progress"], idle["state"]["job_count"]) == (0, 0)
        job = asyncio.create_task(http.post("/sdapi/v1/txt2img", json={**TXT2IMG, "steps": 20}))
        seen = []
        for step in (2, 5, 9):
            await stand_in.wait_for(
                lambda s=step: queue.current is not None and queue.current.step >= s
            )
            seen.append((await http.get("/sdapi/v1/progress?skip_current_image=false")).json())
        reply = await job
    steps = [report["state"]["sampling_step"] for report in seen]
    assert steps == sorted(steps) and steps[0] >= 2 and steps[-1] < 20
    assert [report["progress"] for report in seen] == sorted(report["progress"] for report in seen)
    for report in seen:
        assert report["state"]["sampling_steps"] == 20
        assert report["state"]["job_count"] == 1
        assert report["eta_relative"] > 0
        assert decode(report["current_image"]).format == "PNG"
    assert reply.status_code == 200 and len(reply.json()["images"]) == 1


async def test_interrupt_stops_the_job_and_txt2img_returns_what_it_has(
    stand_in: StandIn,
) -> None:
    stand_in.set_behaviour(step_delay_s=0.005)
    queue = provider(stand_in).queue
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        job = asyncio.create_task(http.post("/sdapi/v1/txt2img", json={**TXT2IMG, "steps": 10_000}))
        await stand_in.wait_for(lambda: queue.current is not None and queue.current.step >= 3)
        assert (await http.post("/sdapi/v1/interrupt")).status_code == 200
        reply = await job
    body = reply.json()
    assert reply.status_code == 200
    assert decode(body["images"][0]).size == (192, 128)
    info = orjson.loads(body["info"])
    assert info["interrupted"] is True
    assert [record.path for record in stand_in.requests] == [
        "/sdapi/v1/txt2img",
        "/sdapi/v1/interrupt",
    ]


async def test_one_job_runs_at_a_time_and_the_rest_queue(stand_in: StandIn) -> None:
    stand_in.set_behaviour(hold_queue=True)
    queue = provider(stand_in).queue
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        jobs = [
            asyncio.create_task(http.post("/sdapi/v1/txt2img", json={**TXT2IMG, "seed": seed}))
            for seed in (1, 2, 3)
        ]
        await stand_in.wait_for(lambda: len(queue.pending) == 3)
        stand_in.set_behaviour(queue_limit=3)
        full = await http.post("/sdapi/v1/txt2img", json=TXT2IMG)
        assert full.status_code == 503
        assert set(full.json()) == {"error", "detail", "body", "errors"}
        running: list[int] = []

        def note() -> bool:
            running.append(1 if queue.current is not None else 0)
            return queue.completed_jobs == 3

        stand_in.set_behaviour(hold_queue=False)
        await stand_in.wait_for(note)
        replies = await asyncio.gather(*jobs)
    seeds = [orjson.loads(reply.json()["info"])["seed"] for reply in replies]
    assert seeds == [1, 2, 3]
    assert max(running) == 1


async def test_models_samplers_options_and_checkpoint_override(stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        models = (await http.get("/sdapi/v1/sd-models")).json()
        samplers = (await http.get("/sdapi/v1/samplers")).json()
        options = (await http.get("/sdapi/v1/options")).json()
        set_reply = await http.post(
            "/sdapi/v1/options", json={"sd_model_checkpoint": "sd_xl_base_1.0"}
        )
        options_after = (await http.get("/sdapi/v1/options")).json()
        override = await http.post(
            "/sdapi/v1/txt2img",
            json={**TXT2IMG, "override_settings": {"sd_model_checkpoint": models[0]["title"]}},
        )
        bad_sampler = await http.post("/sdapi/v1/txt2img", json={**TXT2IMG, "sampler_name": "X"})
    assert set(models[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert {"name", "aliases", "options"} <= set(samplers[0])
    assert options["sd_model_checkpoint"] == models[0]["title"]
    assert set_reply.status_code == 200
    assert options_after["sd_model_checkpoint"] == models[1]["title"]
    assert stand_in.requests[-2].model == "v1-5-pruned-emaonly.safetensors"
    assert override.status_code == 200
    assert bad_sampler.status_code == 404
    assert bad_sampler.json() == {
        "error": "HTTPException",
        "detail": "Sampler not found",
        "body": "",
        "errors": "404: Sampler not found",
    }


async def test_basic_auth_when_configured() -> None:
    async with StandIn("automatic1111", keys={"alice:s3cret"}) as stand_in:
        async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
            refused = await http.get("/sdapi/v1/options")
            wrong = await http.get("/sdapi/v1/options", auth=("alice", "nope"))
            allowed = await http.get("/sdapi/v1/options", auth=("alice", "s3cret"))
    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["www-authenticate"] == "Basic"
    assert allowed.status_code == 200
    assert [record.key for record in stand_in.requests] == [None, "alice:nope", "alice:s3cret"]


async def test_mid_job_error_and_disconnect(stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        stand_in.set_behaviour(error_after_steps=2)
        failed = await http.post("/sdapi/v1/txt2img", json=TXT2IMG)
        stand_in.set_behaviour(error_after_steps=None, disconnect_after_steps=2)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/sdapi/v1/txt2img", json=TXT2IMG)
    assert failed.status_code == 500
    assert failed.json()["error"] == "OutOfMemoryError"
    assert (stand_in.stats["failed"], stand_in.stats["disconnected"]) == (1, 1)
