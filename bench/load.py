"""A small HTTP load generator: fixed concurrency, keep-alive connections, per-request timings.

Runs in its own process (`python -m bench.load FILE` reads a JSON job on stdin and writes the
results to FILE as JSON) so that its CPU use is the same for the direct and the proxied runs it is
compared across.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop


@dataclass
class Job:
    url: str
    body: dict
    headers: dict[str, str]
    concurrency: int
    requests: int  # total across all workers
    stream: bool = False
    warmup: int = 50


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    first_chunk_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_sample: str = ""
    elapsed_s: float = 0.0


async def _one(session: aiohttp.ClientSession, job: Job, payload: bytes, result: Result) -> None:
    start = time.perf_counter()
    try:
        async with session.post(job.url, data=payload, headers=job.headers) as response:
            if job.stream:
                first = None
                async for _chunk in response.content.iter_any():
                    if first is None:
                        first = time.perf_counter()
                if first is not None:
                    result.first_chunk_ms.append((first - start) * 1000)
            else:
                await response.read()
            if response.status != 200:
                result.errors += 1
                result.error_sample = f"{response.status}"
                return
    except aiohttp.ClientError as exc:
        result.errors += 1
        result.error_sample = repr(exc)[:200]
        return
    result.latencies_ms.append((time.perf_counter() - start) * 1000)


async def run(job: Job) -> Result:
    payload = json.dumps(job.body).encode()
    headers = {"content-type": "application/json", **job.headers}
    job.headers = headers
    connector = aiohttp.TCPConnector(limit=job.concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = Result()
        for _ in range(job.warmup):
            await _one(session, job, payload, warm)
        result = Result()
        remaining = job.requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await _one(session, job, payload, result)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(job.concurrency)))
        result.elapsed_s = time.perf_counter() - start
    return result


def main() -> None:
    job = Job(**json.loads(sys.stdin.read()))
    result = uvloop.run(run(job))
    # Into the file the caller names, not stdout: a result of a few hundred kB through a pipe
    # the event loop left non-blocking arrived cut short.
    Path(sys.argv[1]).write_text(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
