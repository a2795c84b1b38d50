"""What the platform's two HTTP ends cost on this machine with nothing of ours in them: a floor
under the per-request CPU figures, beside bench.grpc_floor's for the gRPC hop.

    .venv/bin/python -m bench.http_floor [--seconds 4] [-c 50] [--repeats 3]

- The gateway's end: uvicorn on httptools and uvloop (as gateway/server.py runs it, without its
  bounded head) serving a bare ASGI app that answers every POST with a 600-byte JSON body, under
  wrk at concurrency c; the uvicorn process's CPU from /proc per request.
- text-svc's end: an aiohttp ClientSession (as text-svc's upstream calls use, one pooled
  connector) posting a chat body to bench.fake_provider at concurrency c from this process;
  this process's CPU per request.

Each runs `--repeats` times, alternating; medians printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import aiohttp
import uvicorn

from bench.__main__ import BODY, ROOT, pid_of, wait_http
from bench.wrk import ensure_wrk, run_wrk
from devstack.__main__ import Stack, free_port

ANSWER = b'{"id":"x","object":"chat.completion","choices":[' + b'{"text":"' + b"w" * 520 + b'"}]}'


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bare_app(scope: dict, receive: object, send: object) -> None:
    """Answers anything: reads the body, sends ANSWER."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()  # type: ignore[operator]
        more = message.get("more_body", False)
    await send(  # type: ignore[operator]
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})  # type: ignore[operator]


def serve_bare(port: int) -> None:
    uvicorn.run(
        bare_app, host="127.0.0.1", port=port, http="httptools", loop="uvloop", log_level="warning"
    )


async def aiohttp_posts(url: str, concurrency: int, seconds: float) -> tuple[int, float]:
    """Requests made and this process's CPU seconds over `seconds` at `concurrency`."""
    async with aiohttp.ClientSession() as session:
        # Warm the connection pool first: connects are not what is measured.
        await asyncio.gather(*(session.post(url, json=BODY) for _ in range(concurrency)))
        done = 0
        end = time.monotonic() + seconds
        cpu = cpu_seconds()

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                async with session.post(url, json=BODY) as response:
                    await response.read()
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("-c", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("wrk is needed for the uvicorn arm")
    stack = Stack(logs=ROOT / ".devstack" / "bench" / "http-floor-logs")
    try:
        uvicorn_port, provider_port = free_port(), free_port()
        stack.spawn("fake-provider", "bench.fake_provider", {}, "--port", str(provider_port))
        stack.spawn(
            "bare-uvicorn", "bench.http_floor", {"BENCH_HTTP_FLOOR_SERVE": str(uvicorn_port)}
        )
        wait_http(stack, f"http://127.0.0.1:{uvicorn_port}/", timeout=30)
        server_pid = pid_of(stack, "bare-uvicorn")
        provider = f"http://127.0.0.1:{provider_port}/v1/chat/completions"
        uvicorn_ms, aiohttp_ms = [], []
        for n in range(1, args.repeats + 1):
            before = cpu_seconds(server_pid)
            result = run_wrk(
                wrk, f"http://127.0.0.1:{uvicorn_port}/", BODY, "", args.c, args.seconds
            )
            uvicorn_ms.append((cpu_seconds(server_pid) - before) * 1000 / result.requests)
            done, cpu = asyncio.run(aiohttp_posts(provider, args.c, args.seconds))
            aiohttp_ms.append(cpu * 1000 / done)
            print(  # noqa: T201
                f"#{n} uvicorn bare app {uvicorn_ms[-1]:.3f} ms/request ({result.rps:.0f} req/s)"
                f"   aiohttp client {aiohttp_ms[-1]:.3f} ms/request ({done / args.seconds:.0f}"
                " req/s)",
                flush=True,
            )
        print(  # noqa: T201
            f"medians: uvicorn (server side of one request) {statistics.median(uvicorn_ms):.3f} ms,"
            f" aiohttp (client side of one request) {statistics.median(aiohttp_ms):.3f} ms"
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    serve_port = os.environ.get("BENCH_HTTP_FLOOR_SERVE")
    if serve_port:
        serve_bare(int(serve_port))
    else:
        main()
