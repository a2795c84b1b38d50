"""What `make bench ONLY=images` reads from the stand-ins: the ComfyUI stand-in's log of when
each websocket `progress` event left, and the `grain` knob's photo-sized images."""

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from provider_stand_ins import StandIn
from provider_stand_ins.comfyui import PROGRESS_LOG_ENV

pytestmark = pytest.mark.timeout(30)


# As in test_stand_in_images_comfyui (test modules are not importable from one another).
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


async def test_comfyui_logs_when_each_progress_event_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_LOG_ENV, str(log))
    client_id = uuid.uuid4().hex
    async with (
        StandIn("comfyui", step_delay_s=0.002) as stand_in,
        httpx.AsyncClient(base_url=stand_in.base_url) as http,
        websockets.connect(ws_url(stand_in, client_id)) as ws,
    ):
        await ws.recv()  # the hello status
        before = time.monotonic()
        queued = await http.post(
            "/prompt", json={"prompt": graph(text="a logged lighthouse"), "client_id": client_id}
        )
        await read_until_done(ws, queued.json()["prompt_id"])
        after = time.monotonic()
    lines = [json.loads(raw) for raw in log.read_bytes().splitlines()]
    assert [(line["prompt"], line["step"]) for line in lines] == [
        ("a logged lighthouse", step) for step in (1, 2, 3, 4)
    ]
    times = [line["t"] for line in lines]
    assert before <= times[0] and times == sorted(times) and times[-1] <= after


async def test_grain_makes_a_png_as_large_as_its_pixels() -> None:
    key = "sk-test-images-0123456789abcdef"
    body = {"model": "gpt-image-2", "prompt": "a lighthouse", "size": "512x512"}
    async with (
        StandIn("openai", keys={key}, image_steps=1) as stand_in,
        httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}) as http,
    ):
        url = f"{stand_in.sdk_base_url}/images/generations"
        drawn = (await http.post(url, json=body)).json()
        stand_in.set_behaviour(grain=True)
        grained = (await http.post(url, json={**body, "prompt": "a grained lighthouse"})).json()
    sizes = [len(base64.b64decode(a["data"][0]["b64_json"])) for a in (drawn, grained)]
    assert sizes[0] < 512 * 512 and sizes[1] > 512 * 512 * 3 * 0.8
