"""What any grpc.aio hop costs on this machine, with the platform's options and nothing else: a
floor under the platform's per-request and per-chunk CPU figures.

    .venv/bin/python -m bench.grpc_floor [--seconds 2] [-c 50] [--repeats 3]

A server process (the same grpcio on uvloop as the services, svc_common.grpc_client's
SERVER_OPTIONS, no interceptors, no auth, no health) answers one unary method with a 300-byte
reply and one server-streaming method with N replies of 100 bytes; bytes in, bytes out through a
generic handler, so no proto is (de)serialised. This process is the client, on uvloop too, over
two channels with CHANNEL_OPTIONS: a plain grpc.aio channel and svc_common.grpc_client.channel()
(the platform's metered channel). CPU is read from /proc for the server and for this process,
during fixed windows at concurrency 50; a streamed message's cost is the slope between streams of
N=1 and N=20 messages, so the per-call part of a stream drops out. Latency is taken at
concurrency 1. Each measurement runs `--repeats` times, the two channels in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from bench.__main__ import pct
from devstack.__main__ import Stack, free_port
from svc_common import grpc_client
from svc_common.lifecycle import run

SERVICE = "bench.floor.v1.Floor"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"
UNARY_REPLY = b"u" * 300
STREAM_REPLY = b"s" * 100
# Requests about the size of a small platform request; a stream's request is its length in ASCII.
UNARY_REQUEST = b"q" * 100
LONG_STREAM = 20


def cpu_seconds(pid: int | str) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The server process ---------------------------------------------------------------------------


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return UNARY_REPLY


async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for _ in range(int(request)):
        yield STREAM_REPLY


async def serve(port: int) -> int:
    # request_deserializer / response_serializer left None: bytes pass through untouched.
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.aio.server(options=grpc_client.SERVER_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await server.stop(0)
    return 0


# The client (this process) ----------------------------------------------------------------------

Call = Callable[[], Awaitable[int]]


def calls(channel: grpc.aio.Channel) -> dict[str, Call]:
    """One awaitable per shape of call, each returning how many messages it received."""
    one: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(UNARY)
    many: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(STREAM)

    async def unary_call() -> int:
        await one(UNARY_REQUEST, timeout=10)
        return 1

    def stream_call(n: int) -> Call:
        request = str(n).encode()

        async def call() -> int:
            received = 0
            async for _ in many(request, timeout=10):
                received += 1
            if received != n:
                raise SystemExit(f"a stream of {n} messages delivered {received}")
            return received

        return call

    return {"unary": unary_call, "stream1": stream_call(1), "stream20": stream_call(LONG_STREAM)}


async def window(call: Call, conc: int, seconds: float, server: int) -> tuple[float, float, float]:
    """Calls per second, server and client CPU ms per call, `conc` calls always in flight."""
    count = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    server0, client0, t0 = cpu_seconds(server), cpu_seconds("self"), time.perf_counter()
    deadline = t0 + seconds
    await asyncio.gather(*(worker() for _ in range(conc)))
    server1, client1, t1 = cpu_seconds(server), cpu_seconds("self"), time.perf_counter()
    return (
        count / (t1 - t0),
        (server1 - server0) * 1000 / count,
        (client1 - client0) * 1000 / count,
    )


async def latencies(call: Call, seconds: float) -> list[float]:
    """Milliseconds per call, one call at a time."""
    result = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        await call()
        result.append((time.perf_counter() - start) * 1000)
    return result


COLUMNS = (
    ("unary/s", "{:8.0f}"),
    ("srv ms/unary", "{:12.4f}"),
    ("cli ms/unary", "{:12.4f}"),
    ("srv ms/stream1", "{:14.4f}"),
    ("cli ms/stream1", "{:14.4f}"),
    ("srv ms/stream20", "{:15.4f}"),
    ("cli ms/stream20", "{:15.4f}"),
    ("srv ms/msg", "{:10.4f}"),
    ("cli ms/msg", "{:10.4f}"),
    ("p50 c=1 ms", "{:10.3f}"),
    ("p99 c=1 ms", "{:10.3f}"),
)


def row(label: str, values: list[float]) -> str:
    cells = " ".join(fmt.format(v) for (_, fmt), v in zip(COLUMNS, values, strict=True))
    return f"{label:22s} {cells}"


async def measure(port: int, server: int, conc: int, seconds: float, repeats: int) -> int:
    target = f"127.0.0.1:{port}"
    channels: dict[str, grpc.aio.Channel] = {
        "plain": grpc.aio.insecure_channel(target, options=grpc_client.CHANNEL_OPTIONS),
        "metered": grpc_client.channel(target),
    }
    try:
        for channel in channels.values():
            await asyncio.wait_for(channel.channel_ready(), 30)
        shapes = {name: calls(channel) for name, channel in channels.items()}
        for shape in shapes.values():  # warm up each channel and the server
            for call in shape.values():
                await window(call, conc, 0.3, server)
        print(  # noqa: T201
            f"server pid {server}; c={conc}, {seconds:.1f} s windows; "
            f"ms = CPU milliseconds (user+system, /proc); msg = per streamed message, "
            f"(stream{LONG_STREAM} - stream1) / {LONG_STREAM - 1}",
            flush=True,
        )
        print(f"{'':22s} " + " ".join(title for title, _ in COLUMNS), flush=True)  # noqa: T201
        results: dict[str, list[list[float]]] = {name: [] for name in channels}
        for repeat in range(1, repeats + 1):
            for name, shape in shapes.items():
                rate, srv_unary, cli_unary = await window(shape["unary"], conc, seconds, server)
                _, srv_one, cli_one = await window(shape["stream1"], conc, seconds, server)
                _, srv_long, cli_long = await window(shape["stream20"], conc, seconds, server)
                lat = await latencies(shape["unary"], seconds / 2)
                values = [
                    rate,
                    srv_unary,
                    cli_unary,
                    srv_one,
                    cli_one,
                    srv_long,
                    cli_long,
                    (srv_long - srv_one) / (LONG_STREAM - 1),
                    (cli_long - cli_one) / (LONG_STREAM - 1),
                    pct(lat, 50),
                    pct(lat, 99),
                ]
                results[name].append(values)
                print(row(f"#{repeat} {name}", values), flush=True)  # noqa: T201
        print("medians:")  # noqa: T201
        for name, rows in results.items():
            medians = [statistics.median(column) for column in zip(*rows, strict=True)]
            print(row(f"{name} channel", medians))  # noqa: T201
    finally:
        for channel in channels.values():
            await channel.close()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, metavar="PORT", help="be the server, on PORT")
    parser.add_argument("--seconds", type=float, default=2.0, help="each CPU window")
    parser.add_argument("-c", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        raise SystemExit(run(serve(args.serve)))
    stack = Stack()
    try:
        port = free_port()
        stack.spawn("grpc-floor-server", "bench.grpc_floor", {}, "--serve", str(port))
        pid = next(
            s.pid for s in stack.supervisor.services if s.name == "grpc-floor-server" and s.pid
        )
        run(measure(port, pid, args.c, args.seconds, args.repeats))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
