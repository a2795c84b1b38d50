"""text-svc's own cost per call: CPU milliseconds per Generate / 20-chunk GenerateStream, and
latency at concurrency 1, over gRPC against the provider stand-ins (no gateway, no settings-svc).

    .venv/bin/python -m bench.grpc_overhead [--provider openai|anthropic] [-n 2000]

Each process is its own, as in production: the stand-in, text-svc (operator defaults, member mode
without billing, usage events to Redis when BENCH_REDIS_URL/TEST_REDIS_URL is set) and this
driver. CPU is read from /proc for the text-svc process alone, so the figure does not depend on
what else shares the machine; latency does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import grpc

from bench.__main__ import pct, wait_grpc
from devstack.__main__ import Stack, free_port
from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import mint_service_token, outgoing_metadata

KEY = "sk-bench-platform-key-0000000000"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    port: int, token: str, model: str, pid: int, n: int, conc: int, rpcs: str
) -> None:
    metadata = outgoing_metadata(token, user_id="bench-user", is_member=True)
    request = text_pb2.GenerateRequest(
        model=model, messages=[text_pb2.ChatMessage(role="user", content="benchmark this")]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = text_pb2_grpc.TextServiceStub(channel)

        async def unary() -> float:
            start = time.perf_counter()
            await stub.Generate(request, metadata=metadata, timeout=10)
            return time.perf_counter() - start

        async def stream() -> float:
            start = time.perf_counter()
            first = 0.0
            async for _ in stub.GenerateStream(request, metadata=metadata, timeout=10):
                first = first or time.perf_counter()
            return first - start

        for name, one, count in (("Generate", unary, n), ("GenerateStream", stream, n // 4)):
            if rpcs != "all" and rpcs != name:
                continue
            for _ in range(100):
                await one()
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            latencies = [await one() for _ in range(count)]
            cpu1, t1 = cpu_seconds(pid), time.perf_counter()
            lat = [x * 1000 for x in latencies]
            label = "TTFC" if name == "GenerateStream" else "latency"
            print(  # noqa: T201
                f"{name:15s} c=1   {label} p50 {pct(lat, 50):.2f} ms  p99 {pct(lat, 99):.2f} ms  "
                f"text-svc CPU {(cpu1 - cpu0) * 1000 / count:.3f} ms/call"
            )
            remaining = count

            async def worker(one=one) -> None:  # type: ignore[no-untyped-def]
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await one()

            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conc)))
            cpu1, t1 = cpu_seconds(pid), time.perf_counter()
            print(  # noqa: T201
                f"{name:15s} c={conc:<3d} {count / (t1 - t0):8.0f} calls/s  "
                f"text-svc CPU {(cpu1 - cpu0) * 1000 / count:.3f} ms/call"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", choices=sorted(MODELS), default="openai")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", type=int, default=50)
    parser.add_argument("--rpc", choices=["all", "Generate", "GenerateStream"], default="all")
    args = parser.parse_args()
    stack = Stack()
    secret = uuid.uuid4().hex
    try:
        stand_in = free_port()
        stack.spawn(
            "stand-in",
            "provider_stand_ins",
            {},
            *("--provider", args.provider, "--port", str(stand_in), "--keys", KEY),
            *("--chunks", "20"),
        )
        base = f"http://127.0.0.1:{stand_in}" + ("/v1" if args.provider == "openai" else "")
        port = free_port()
        redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL") or ""
        usage_stream = f"bench-overhead-{uuid.uuid4().hex[:6]}"
        stack.spawn(
            "text-svc",
            "text_svc",
            {
                "TEXT_SVC_SERVICE_TOKEN_SECRET": secret,
                "TEXT_SVC_LISTEN": f"127.0.0.1:{port}",
                "TEXT_SVC_LOG_LEVEL": "WARNING",
                "TEXT_SVC_ENVIRONMENT": "production",
                "TEXT_SVC_DEFAULT_PROVIDER": args.provider,
                "TEXT_SVC_DEFAULT_MODEL": MODELS[args.provider],
                f"TEXT_SVC_{args.provider.upper()}_BASE_URL": base,
                f"TEXT_SVC_{args.provider.upper()}_API_KEY": KEY,
                "TEXT_SVC_REDIS_URL": redis_url,
                "TEXT_SVC_USAGE_STREAM": usage_stream,
            },
        )
        asyncio.run(wait_grpc(port))
        pid = next(s.pid for s in stack.supervisor.services if s.name == "text-svc" and s.pid)
        print(f"text-svc pid {pid}", flush=True)  # noqa: T201  (for a profiler to attach)
        token = mint_service_token(secret, "bench")
        asyncio.run(measure(port, token, MODELS[args.provider], pid, args.n, args.c, args.rpc))
    finally:
        stack.stop()
        if redis_url:
            import redis

            redis.Redis.from_url(redis_url).delete(usage_stream)


if __name__ == "__main__":
    main()
