"""The image path's figures (`make bench ONLY=images`, or `python -m bench.images`).

Processes as in production, one platform per provider: the provider stand-in, image-svc on
operator defaults in member mode (no settings-svc or billing: this times the image path, not
money, which the text figures cover) and the gateway. The load runs in this process with httpx.

- Relay latency: the ComfyUI stand-in appends the CLOCK_MONOTONIC time at which it sent each
  websocket `progress` event to a log (COMFYUI_STAND_IN_PROGRESS_LOG); the client here notes when
  the matching `image_generation.progress` SSE event arrives. CLOCK_MONOTONIC is one clock for
  every process on the machine, so the difference is the platform's relay (image-svc's websocket
  reader, gRPC, the gateway's SSE), at 20 concurrent streamed jobs. Jobs are told apart by prompt.
- Overhead: a non-streamed gpt-image-2 1024x1024 generation through the gateway against the same
  body posted to the OpenAI stand-in, both with the b64 image in the answer (image transfer
  included): the drawn image (small) and a grained one (as large as a photo's PNG).
- image-svc's peak RSS while 20 non-streamed jobs each return a ~4 MB PNG.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import psutil

from devstack.__main__ import free_port
from gateway.auth import mint_token
from svc_common.auth import mint_service_token

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-platform-key-0000000000"
COMFY_MODEL = "sd_xl_base_1.0.safetensors"
CONCURRENCY = 20
BIG_SIDE = 1184  # a grained PNG of 1184 x 1184 is about 4 MB


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


@contextmanager
def platform(provider: str, stand_in_env: dict[str, str]) -> Iterator[dict]:
    """The stand-in, image-svc and the gateway, each its own process."""
    secret = secrets.token_urlsafe(32)
    jwt_secret = secrets.token_urlsafe(32)
    ports = {name: free_port() for name in ("stand_in", "image", "gateway")}
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    stand_in = f"http://127.0.0.1:{ports['stand_in']}"
    provider_url = f"{stand_in}/v1" if provider == "openai" else stand_in
    prefix = provider.upper()
    specs = [
        (
            "provider_stand_ins",
            ["--provider", provider, "--port", str(ports["stand_in"]), "--accept-any-key"],
            base | stand_in_env,
        ),
        (
            "image_svc",
            [],
            base
            | {
                "IMAGE_SVC_ENVIRONMENT": "development",
                "IMAGE_SVC_LOG_LEVEL": "WARNING",
                "IMAGE_SVC_LISTEN": f"127.0.0.1:{ports['image']}",
                "IMAGE_SVC_SERVICE_TOKEN_SECRET": secret,
                "IMAGE_SVC_MEMBER_MODE": "true",
                "IMAGE_SVC_DEFAULT_PROVIDER": provider,
                "IMAGE_SVC_DEFAULT_MODEL": "gpt-image-2" if provider == "openai" else COMFY_MODEL,
                f"IMAGE_SVC_{prefix}_BASE_URL": provider_url,
                f"IMAGE_SVC_{prefix}_API_KEY": KEY,
            },
        ),
        (
            "gateway",
            [],
            base
            | {
                "GATEWAY_PORT": str(ports["gateway"]),
                "GATEWAY_ENVIRONMENT": "development",
                "GATEWAY_LOG_LEVEL": "WARNING",
                "GATEWAY_JWT_HS256_SECRET": jwt_secret,
                "GATEWAY_IMAGE_TARGET": f"127.0.0.1:{ports['image']}",
                "GATEWAY_SERVICE_TOKEN": mint_service_token(secret, "gateway"),
            },
        ),
    ]
    running: dict[str, subprocess.Popen] = {}
    try:
        for module, args, env in specs:
            running[module] = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        token = mint_token(jwt_secret, "bench", member=True, ttl_s=3600)
        deadline = time.monotonic() + 60
        while True:
            try:
                status = httpx.get(
                    f"{gateway}/api/image-proxy/v1/status",
                    headers={"authorization": f"Bearer {token}"},
                    timeout=2,
                )
                if (
                    status.status_code == 200
                    and httpx.get(stand_in + "/_stand_in/stats").is_success
                ):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the {provider} image platform did not become ready")
            time.sleep(0.1)
        yield {
            "gateway": gateway,
            "stand_in": stand_in,
            "direct": provider_url,
            "token": token,
            "image_pid": running["image_svc"].pid,
        }
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def relay_figures(received: dict[tuple[str, int], float], log: Path) -> dict:
    sent = {}
    for raw in log.read_bytes().splitlines():
        entry = orjson.loads(raw)
        sent[(entry["prompt"], entry["step"])] = entry["t"]
    delays = [(received[k] - sent[k]) * 1000 for k in received if k in sent and k[0] != "warm up"]
    return {
        "events": len(delays),
        "sent": sum(1 for k in sent if k[0] != "warm up"),
        "p50": statistics.median(delays),
        "p99": pct(delays, 99),
        "max": max(delays),
    }


async def relay_latency(p: dict, rounds: int) -> dict[tuple[str, int], float]:
    """Stand-in progress event → the client's SSE progress event, at 20 concurrent jobs."""
    url = f"{p['gateway']}/api/image-proxy/v1/images/generations"
    received: dict[tuple[str, int], float] = {}

    async def one(client: httpx.AsyncClient, prompt: str) -> None:
        body = {"model": COMFY_MODEL, "prompt": prompt, "size": "512x512", "stream": True}
        body["steps"] = 10
        async with client.stream("POST", url, json=body) as response:
            assert response.status_code == 200, (await response.aread())[:300]
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "image_generation.progress":
                    now = time.monotonic()
                    received[(prompt, orjson.loads(line[6:])["step"])] = now

    auth = {"authorization": f"Bearer {p['token']}"}
    async with httpx.AsyncClient(headers=auth, timeout=120) as client:
        await one(client, "warm up")
        for r in range(rounds):
            await asyncio.gather(*(one(client, f"bench job {r}-{i}") for i in range(CONCURRENCY)))
    return received


async def overhead(p: dict, n: int) -> dict:
    """Non-streamed 1024 x 1024 through the gateway against the stand-in directly."""
    body = {"model": "gpt-image-2", "prompt": "a lighthouse at dusk", "size": "1024x1024"}
    routes = {
        "direct": (f"{p['direct']}/images/generations", {"authorization": f"Bearer {KEY}"}),
        "gateway": (
            f"{p['gateway']}/api/image-proxy/v1/images/generations",
            {"authorization": f"Bearer {p['token']}"},
        ),
    }
    out: dict = {}
    async with httpx.AsyncClient(timeout=120) as client:
        for grain in (False, True):
            knob = await client.post(p["stand_in"] + "/_stand_in/behaviour", json={"grain": grain})
            knob.raise_for_status()
            for name, (url, headers) in routes.items():
                times: list[float] = []
                size = 0
                for i in range(n + 5):
                    started = time.perf_counter()
                    response = await client.post(url, json=body, headers=headers)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, response.text[:300]
                    size = len(response.content)
                    if i >= 5:  # warm-up
                        times.append(elapsed)
                key = f"{name}_{'grain' if grain else 'drawn'}"
                out[key] = {"p50": statistics.median(times), "p99": pct(times, 99), "bytes": size}
    return out


async def peak_rss(p: dict) -> dict:
    """image-svc's RSS while 20 non-streamed jobs each return a ~4 MB PNG."""
    url = f"{p['gateway']}/api/image-proxy/v1/images/generations"
    side = f"{BIG_SIDE}x{BIG_SIDE}"
    process = psutil.Process(p["image_pid"])
    sizes: list[int] = []
    async with httpx.AsyncClient(
        headers={"authorization": f"Bearer {p['token']}"}, timeout=120
    ) as client:
        knob = await client.post(p["stand_in"] + "/_stand_in/behaviour", json={"grain": True})
        knob.raise_for_status()

        async def one(i: int) -> None:
            body = {"model": "gpt-image-2", "prompt": "a big one", "size": side}
            response = await client.post(url, json=body)
            assert response.status_code == 200, response.text[:300]
            sizes.append(len(response.content))

        await one(-1)  # warm up
        idle = process.memory_info().rss
        peak = idle
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one(i) for i in range(CONCURRENCY)))
        sampling = False
        await sampler
    # The answer is JSON with the base64 PNG: 4/3 of the image.
    return {
        "rss_idle_mb": idle / 2**20,
        "rss_peak_mb": peak / 2**20,
        "image_mb": statistics.median(sizes) * 3 / 4 / 2**20,
    }


def measure(quick: bool = False) -> dict:
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "progress.jsonl"
        env = {"COMFYUI_STAND_IN_PROGRESS_LOG": str(log)}
        with platform("comfyui", env) as p:
            knob = httpx.post(p["stand_in"] + "/_stand_in/behaviour", json={"step_delay_s": 0.02})
            knob.raise_for_status()
            received = asyncio.run(relay_latency(p, 1 if quick else 3))
        figures["relay"] = relay_figures(received, log)
    with platform("openai", {}) as p:
        figures["overhead"] = asyncio.run(overhead(p, 20 if quick else 100))
        figures["memory"] = asyncio.run(peak_rss(p))
    return figures


def render(r: dict) -> list[str]:
    """The section for docs/benchmarks.md: its heading first (bench.__main__.render_all)."""
    relay, o, m = r["relay"], r["overhead"], r["memory"]

    def over(kind: str) -> float:
        return float(o[f"gateway_{kind}"]["p50"] - o[f"direct_{kind}"]["p50"])

    def verdict(value: float, target: float) -> str:
        return "met" if value <= target else "**not met**"

    rows = [
        f"| {label} | {o[f'{name}_{kind}']['p50']:.2f} | {o[f'{name}_{kind}']['p99']:.2f} | "
        f"{o[f'{name}_{kind}']['bytes'] / 2**20:.2f} |"
        for kind in ("drawn", "grain")
        for name, label in (
            ("direct", f"direct to the stand-in, {kind} image"),
            ("gateway", f"gateway → image-svc, {kind} image"),
        )
    ]
    return [
        "### Images (issue 11)",
        "",
        "One platform per provider, each process its own: the stand-in, image-svc (operator "
        "defaults, member mode, no billing) and the gateway; the client is httpx in the bench "
        "process (`bench/images.py`).",
        "",
        f"- Stand-in progress event → client SSE event (ComfyUI websocket `progress` → "
        f"`image_generation.progress`, times on CLOCK_MONOTONIC from the stand-in's log), "
        f"{CONCURRENCY} concurrent streamed jobs, {relay['events']} events of "
        f"{relay['sent']} sent: p50 **{relay['p50']:.2f} ms**, p99 {relay['p99']:.2f} ms, "
        f"max {relay['max']:.2f} ms (target p50 ≤ 5 ms: {verdict(relay['p50'], 5)}).",
        "",
        "Non-streamed gpt-image-2 1024 x 1024 (the answer carries the b64 PNG; the drawn image is "
        "the stand-in's own, the grained one is as hard to compress as a photo):",
        "",
        "| path | p50 (ms) | p99 (ms) | answer (MB) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"- Overhead at p50, image transfer included: drawn **{over('drawn'):.2f} ms**, grained "
        f"**{over('grain'):.2f} ms** (target ≤ 10 ms: {verdict(over('grain'), 10)}).",
        f"- image-svc's RSS with {CONCURRENCY} concurrent jobs each returning a "
        f"{m['image_mb']:.1f} MB PNG ({BIG_SIDE} x {BIG_SIDE}, grained): {m['rss_idle_mb']:.0f} MB "
        f"before, **{m['rss_peak_mb']:.0f} MB peak**; bounded by jobs in flight x (the provider's "
        "JSON, its base64 text, the image bytes, the gRPC answer): a few times the image each.",
        "",
    ]


def main() -> int:
    figures = measure()
    print("\n".join(render(figures)))  # noqa: T201 - the command's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
