"""The ComfyUI stand-in: /prompt, the /ws websocket's events and binary previews, the queue,
interrupt, history and view, driven with httpx and a websockets client."""

import asyncio
import io
import json
import os
import signal
import struct
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image

from provider_stand_ins import StandIn
from provider_stand_ins.comfyui import ComfyUIProvider

pytestmark = pytest.mark.timeout(30)


def graph(seed: int = 5, steps: int = 4, text: str = "a lighthouse") -> dict[str, Any]:
    """The minimal txt2img graph of ComfyUI's basic_api_example.py."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed, "steps": steps, "cfg": 8, "sampler_name": "euler",
                "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0],
                "negative": ["7", 0], "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 256, "height": 192, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage",
              "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }  # fmt: skip


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    async with StandIn("comfyui", step_delay_s=0.002) as running:
        yield running


def ws_url(stand_in: StandIn, client_id: str) -> str:
    return f"ws://{stand_in.host}:{stand_in.port}/ws?clientId={client_id}"


async def read_until_done(ws: Any, prompt_id: str) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Text events and binary frames until ``executing`` with ``node: null`` for the prompt."""
    events: list[dict[str, Any]] = []
    frames: list[bytes] = []
    while True:
        message = await ws.recv()
        if isinstance(message, bytes):
            frames.append(message)
            continue
        event = json.loads(message)
        events.append(event)
        data = event["data"]
        if event["type"] == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
            return events, frames


async def test_a_prompt_runs_with_events_in_order_previews_history_and_view(
    stand_in: StandIn,
) -> None:
    client_id = uuid.uuid4().hex
    async with (
        httpx.AsyncClient(base_url=stand_in.base_url) as http,
        websockets.connect(ws_url(stand_in, client_id)) as ws,
    ):
        hello = json.loads(await ws.recv())
        assert hello == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id},
        }
        stand_in.set_behaviour(hold_queue=True)
        queued = await http.post("/prompt", json={"prompt": graph(), "client_id": client_id})
        prompt_id = queued.json()["prompt_id"]
        assert queued.json() == {"prompt_id": prompt_id, "number": 0, "node_errors": {}}
        assert (await http.get(f"/history/{prompt_id}")).json() == {}
        stand_in.set_behaviour(hold_queue=False)
        events, frames = await read_until_done(ws, prompt_id)
        history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
        saved = history["outputs"]["9"]["images"][0]
        view = await http.get("/view", params=saved)
        api_view = await http.get("/api/view", params=saved)

    kinds = [event["type"] for event in events]
    assert kinds[0] == "status"
    assert kinds[1:4] == ["execution_start", "execution_cached", "executing"]
    assert kinds[-3:] == ["executed", "execution_success", "executing"]
    executing = [event["data"]["node"] for event in events if event["type"] == "executing"]
    assert executing == ["4", "6", "7", "5", "3", "8", "9", None]
    progress = [event["data"] for event in events if event["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (step, 4, "3") for step in (1, 2, 3, 4)
    ]
    assert all(p["prompt_id"] == prompt_id for p in progress)
    # Each step's events come in order: progress, then its preview frame.
    assert kinds.index("progress") < kinds.index("executed")
    assert len(frames) == 4
    for frame in frames:
        event_id, image_format = struct.unpack(">II", frame[:8])
        assert (event_id, image_format) == (1, 1)
        assert Image.open(io.BytesIO(frame[8:])).format == "JPEG"
    assert saved == {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
    assert history["status"]["status_str"] == "success"
    assert history["status"]["completed"] is True
    assert [message[0] for message in history["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert history["prompt"][1] == prompt_id
    image = Image.open(io.BytesIO(view.content))
    assert (view.headers["content-type"], image.format, image.size) == (
        "image/png",
        "PNG",
        (256, 192),
    )
    assert api_view.content == view.content


async def test_a_repeated_prompt_reports_cached_nodes(stand_in: StandIn) -> None:
    client_id = "cache-client"
    async with (
        httpx.AsyncClient(base_url=stand_in.base_url) as http,
        websockets.connect(ws_url(stand_in, client_id)) as ws,
    ):
        await ws.recv()
        first = await http.post("/prompt", json={"prompt": graph(seed=1), "client_id": client_id})
        await read_until_done(ws, first.json()["prompt_id"])
        second = await http.post("/prompt", json={"prompt": graph(seed=2), "client_id": client_id})
        events, _ = await read_until_done(ws, second.json()["prompt_id"])
    cached = next(event for event in events if event["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["4", "6", "7", "5"]
    executing = [event["data"]["node"] for event in events if event["type"] == "executing"]
    assert executing == ["3", "8", "9", None]


async def test_three_queued_prompts_see_queue_remaining_fall(stand_in: StandIn) -> None:
    client_id = "queue-client"
    async with (
        httpx.AsyncClient(base_url=stand_in.base_url) as http,
        websockets.connect(ws_url(stand_in, client_id)) as ws,
    ):
        await ws.recv()
        stand_in.set_behaviour(hold_queue=True)
        ids = []
        for seed in (1, 2, 3):
            reply = await http.post(
                "/api/prompt", json={"prompt": graph(seed=seed), "client_id": client_id}
            )
            ids.append(reply.json()["prompt_id"])
        queue = (await http.get("/queue")).json()
        assert [item[1] for item in queue["queue_pending"]] == ids
        stand_in.set_behaviour(hold_queue=False)
        remaining = []
        for prompt_id in ids:
            events, _ = await read_until_done(ws, prompt_id)
            remaining += [
                event["data"]["status"]["exec_info"]["queue_remaining"]
                for event in events
                if event["type"] == "status"
            ]
        # The last job's "queue is empty" status follows its final executing event.
        last = json.loads(await ws.recv())
        remaining.append(last["data"]["status"]["exec_info"]["queue_remaining"])
    assert remaining == [1, 2, 3, 2, 1, 0]


async def test_interrupt_and_queue_delete(stand_in: StandIn) -> None:
    stand_in.set_behaviour(step_delay_s=0.005)
    comfy = stand_in.app.provider
    assert isinstance(comfy, ComfyUIProvider)
    client_id = "interrupt-client"
    async with (
        httpx.AsyncClient(base_url=stand_in.base_url) as http,
        websockets.connect(ws_url(stand_in, client_id)) as ws,
    ):
        await ws.recv()
        running = await http.post(
            "/prompt", json={"prompt": graph(steps=10_000), "client_id": client_id}
        )
        waiting = await http.post("/prompt", json={"prompt": graph(seed=9), "client_id": client_id})
        running_id, waiting_id = running.json()["prompt_id"], waiting.json()["prompt_id"]
        await stand_in.wait_for(
            lambda: comfy.queue.current is not None and comfy.queue.current.step >= 2
        )
        await http.post("/queue", json={"delete": [waiting_id]})
        assert (await http.get("/queue")).json()["queue_pending"] == []
        await http.post("/interrupt")
        events, frames = await read_until_done(ws, running_id)
        history = (await http.get("/history")).json()
    kinds = [event["type"] for event in events]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds
    interrupted = next(e["data"] for e in events if e["type"] == "execution_interrupted")
    assert (interrupted["prompt_id"], interrupted["node_id"]) == (running_id, "3")
    assert frames
    assert list(history) == [running_id]  # a deleted prompt never ran
    assert history[running_id]["status"]["status_str"] == "error"
    assert [record.path for record in stand_in.requests].count("/interrupt") == 1


async def test_execution_error_event(stand_in: StandIn) -> None:
    stand_in.set_behaviour(error_after_steps=2)
    async with (
        httpx.AsyncClient(base_url=stand_in.base_url) as http,
        websockets.connect(ws_url(stand_in, "err")) as ws,
    ):
        await ws.recv()
        reply = await http.post("/prompt", json={"prompt": graph(), "client_id": "err"})
        events, _ = await read_until_done(ws, reply.json()["prompt_id"])
    error = next(e["data"] for e in events if e["type"] == "execution_error")
    assert error["node_type"] == "KSampler"
    assert {"exception_message", "exception_type", "traceback", "executed"} <= set(error)


async def test_refused_graphs_get_comfyui_validation_bodies(stand_in: StandIn) -> None:
    bad_ckpt = graph()
    bad_ckpt["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    bad_ckpt["3"]["inputs"]["steps"] = 0
    unknown_node = {**graph(), "10": {"class_type": "LoraLoader", "inputs": {}}}
    no_output = {key: node for key, node in graph().items() if key != "9"}
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        no_prompt = await http.post("/prompt", json={"client_id": "x"})
        invalid = await http.post("/prompt", json={"prompt": bad_ckpt})
        unknown = await http.post("/prompt", json={"prompt": unknown_node})
        outputless = await http.post("/prompt", json={"prompt": no_output})
    assert (no_prompt.status_code, no_prompt.json()) == (
        400,
        {"error": "no prompt", "node_errors": []},
    )
    body = invalid.json()
    assert invalid.status_code == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(body["node_errors"]) == {"3", "4"}
    assert body["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"
    assert body["node_errors"]["4"]["class_type"] == "CheckpointLoaderSimple"
    assert body["node_errors"]["3"]["errors"][0]["type"] == "value_smaller_than_min"
    assert body["node_errors"]["3"]["dependent_outputs"] == ["9"]
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == (
        "Cannot execute because node LoraLoader does not exist."
    )
    assert outputless.json()["error"]["type"] == "prompt_no_outputs"


async def test_view_refuses_traversal_and_missing_files(stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        traversal = await http.get("/view", params={"filename": "../secrets.png", "type": "output"})
        missing = await http.get("/view", params={"filename": "nope.png", "type": "output"})
    assert (traversal.status_code, missing.status_code) == (400, 404)


async def test_object_info_and_system_stats(stand_in: StandIn) -> None:
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        info = (await http.get("/object_info")).json()
        one = (await http.get("/api/object_info/KSampler")).json()
        stats = (await http.get("/system_stats")).json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == list(
        stand_in.state.models
    )
    assert "euler" in info["KSampler"]["input"]["required"]["sampler_name"][0]
    assert "karras" in info["KSampler"]["input"]["required"]["scheduler"][0]
    assert list(one) == ["KSampler"]
    assert {"os", "comfyui_version", "python_version"} <= set(stats["system"])
    assert stats["devices"][0]["type"] == "cuda"


async def test_disconnect_knob_closes_the_websocket_and_the_job_goes_on(
    stand_in: StandIn,
) -> None:
    stand_in.set_behaviour(disconnect_after_steps=2)
    async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
        async with websockets.connect(ws_url(stand_in, "drop")) as ws:
            await ws.recv()
            reply = await http.post("/prompt", json={"prompt": graph(), "client_id": "drop"})
            prompt_id = reply.json()["prompt_id"]
            with pytest.raises(websockets.ConnectionClosed):
                await read_until_done(ws, prompt_id)
        comfy = stand_in.app.provider
        assert isinstance(comfy, ComfyUIProvider)
        await stand_in.wait_for(lambda: prompt_id in comfy.history)
        history = (await http.get(f"/history/{prompt_id}")).json()
    assert history[prompt_id]["status"]["status_str"] == "success"


async def test_keys_make_it_ask_for_a_bearer_key() -> None:
    async with StandIn("comfyui", keys={"proxy-key"}) as stand_in:
        async with httpx.AsyncClient(base_url=stand_in.base_url) as http:
            refused = await http.get("/system_stats")
            allowed = await http.get("/system_stats", headers={"authorization": "Bearer proxy-key"})
    assert (refused.status_code, allowed.status_code) == (401, 200)
    assert [record.key for record in stand_in.requests] == [None, "proxy-key"]


async def test_command_line_serves_the_image_stand_ins() -> None:
    """``python -m provider_stand_ins --provider comfyui`` (and the others), as make run would."""
    for provider, path in [
        ("comfyui", "/system_stats"),
        ("automatic1111", "/sdapi/v1/options"),
        ("stability", "/v2beta/stable-image/generate/core"),
    ]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "provider_stand_ins", "--provider", provider, "--demo",
            "--step-delay-s", "0.001", stdout=-1,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = (await process.stdout.readline()).decode()
            assert line.startswith(f"stand-in ready provider={provider} url=http://"), line
            url = line.split("url=")[1].strip()
            async with httpx.AsyncClient() as http:
                if provider == "stability":
                    reply = await http.post(
                        url + path,
                        headers={"authorization": "Bearer any", "accept": "image/*"},
                        files={"prompt": (None, "x")},
                    )
                else:
                    reply = await http.get(url + path)
            assert reply.status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
