"""A cheap SSE client for the paced-stream benchmark: raw asyncio over HTTP/1.1, one connection
per stream, no HTTP library.

Runs in its own process (`python -m bench.streams` reads a JSON job on stdin, prints JSON
results). It reads the stamps `<seq>@<monotonic>;` that bench.fake_provider writes into each
chunk's content (CLOCK_MONOTONIC is one clock for every process on the machine), so each chunk's
delay from the provider's write to this client's read is measured directly, whatever merged or
split it on the way. A stream's chunks arrive in one `data_received` or several; each stamp gets
the time of the read that completed it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field

import uvloop

from bench.fake_provider import cpu_seconds

STAMP = re.compile(rb"(\d+)@(\d+\.\d+);")


@dataclass
class StreamJob:
    host: str
    port: int
    path: str
    headers: dict[str, str]
    body: dict
    concurrency: int
    chunks: int  # how many stamped chunks each stream must deliver
    streams_per_worker: int = 1
    ramp_s: float = 0.0  # workers start spread over this long


@dataclass
class StreamResult:
    ttfc_ms: list[float] = field(default_factory=list)  # request written -> first stamp read
    delays_ms: list[float] = field(default_factory=list)  # provider write -> client read
    added_gaps_ms: list[float] = field(default_factory=list)  # read gap - write gap
    streams: int = 0
    lost_chunks: int = 0
    failed_streams: int = 0
    error_sample: str = ""
    max_concurrent: int = 0
    client_cpu_s: float = 0.0
    elapsed_s: float = 0.0


class _Stream(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future[None]) -> None:
        self.request = request
        self.done = done
        self.tail = b""
        self.status = b""
        self.sent_at = 0.0
        self.saw_done = False
        self.seen: list[tuple[int, float, float]] = []  # seq, written at, read at

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sent_at = time.monotonic()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self.status = data[:12]
        data = self.tail + data
        end = 0
        for match in STAMP.finditer(data):
            self.seen.append((int(match[1]), float(match[2]), now))
            end = match.end()
        # Keep what may hold the start of a stamp cut by this read.
        self.tail = data[max(end, len(data) - 32) :]
        self.saw_done = self.saw_done or b"[DONE]" in data
        # The chunked body's last chunk after [DONE] ends the stream, whether or not the server
        # honours `connection: close` (the fake provider keeps connections open).
        if self.saw_done and data.endswith(b"0\r\n\r\n") and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(job: StreamJob) -> StreamResult:
    loop = asyncio.get_running_loop()
    payload = json.dumps(job.body).encode()
    request = (
        f"POST {job.path} HTTP/1.1\r\nhost: {job.host}:{job.port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
        "connection: close\r\n" + "".join(f"{k}: {v}\r\n" for k, v in job.headers.items()) + "\r\n"
    ).encode() + payload
    result = StreamResult()
    active = 0

    async def one() -> None:
        nonlocal active
        done: asyncio.Future[None] = loop.create_future()
        transport, protocol = await loop.create_connection(
            lambda: _Stream(request, done), job.host, job.port
        )
        active += 1
        result.max_concurrent = max(result.max_concurrent, active)
        try:
            await asyncio.wait_for(done, timeout=60)
        finally:
            active -= 1
            transport.close()
        result.streams += 1
        seen = protocol.seen
        seqs = {seq for seq, _, _ in seen}
        lost = job.chunks - len(seqs & set(range(job.chunks)))
        if lost or b" 200" not in protocol.status:
            result.failed_streams += 1
            result.lost_chunks += lost
            result.error_sample = protocol.status.decode("latin-1")
        if seen:
            result.ttfc_ms.append((seen[0][2] - protocol.sent_at) * 1000)
        for (_, w0, r0), (_, w1, r1) in itertools.pairwise(seen):
            result.added_gaps_ms.append(((r1 - r0) - (w1 - w0)) * 1000)
        result.delays_ms.extend((read - written) * 1000 for _, written, read in seen)

    async def worker(i: int) -> None:
        if job.ramp_s:
            await asyncio.sleep(job.ramp_s * i / job.concurrency)
        for _ in range(job.streams_per_worker):
            try:
                await one()
            except (OSError, TimeoutError) as exc:
                result.failed_streams += 1
                result.error_sample = repr(exc)[:200]

    cpu0, start = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(job.concurrency)))
    result.elapsed_s = time.perf_counter() - start
    result.client_cpu_s = cpu_seconds() - cpu0
    return result


def main() -> None:
    job = StreamJob(**json.loads(sys.stdin.read()))
    result = uvloop.run(run(job))
    # The event loop may leave stdout non-blocking: a large result written to a slow reader's
    # pipe would then be cut at the pipe's size.
    os.set_blocking(sys.stdout.fileno(), True)
    sys.stdout.write(json.dumps(asdict(result)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
