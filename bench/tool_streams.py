"""Per-chunk cost of a tool-call stream against a text stream, in the same run: the gateway's
chat stream loop (gateway.streaming) over text.v1 stream messages, content deltas in one case and
tool-call argument deltas (as text-svc relays them) in the other.

    .venv/bin/python -m bench.tool_streams [-n 20000]

The model stream is a list of ready messages, so what is timed is the gateway's own work per
chunk (reading the message, choosing the writer, the chunk's bytes). Runs alternate; the median
of seven runs of each is printed in microseconds per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from gateway.metrics import Metrics
from gateway.streaming import ChunkWriter, _events
from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.text.v1 import text_pb2


class ReadyStream:
    """A model stream whose messages are all already there."""

    def __init__(self, messages: list[text_pb2.GenerateStreamResponse]) -> None:
        self._messages = iter(messages)

    async def read(self) -> text_pb2.GenerateStreamResponse | None:
        return next(self._messages, None)

    def cancel(self) -> None:
        pass


def messages(n: int, tools: bool) -> list[text_pb2.GenerateStreamResponse]:
    out = []
    for i in range(n):
        if tools:
            call = text_pb2.ToolCallDelta(index=0, arguments='{"ci' if i else "")
            if i == 0:
                call.id, call.name = "call_1", "get_weather"
            delta = text_pb2.StreamDelta(tool_calls=[call])
        else:
            delta = text_pb2.StreamDelta(content=" word")
        out.append(text_pb2.GenerateStreamResponse(delta=delta))
    finish = text_pb2.StreamFinish(
        finish_reason="tool_calls" if tools else "stop",
        usage=common_pb2.Usage(input_tokens=10, output_tokens=n),
    )
    out.append(text_pb2.GenerateStreamResponse(finish=finish))
    return out


async def per_chunk_us(n: int, tools: bool) -> float:
    stream: Any = ReadyStream(messages(n, tools))
    writer = ChunkWriter("gen", "gpt-4o-mini", 1, True)
    started = time.perf_counter()
    async for _ in _events(stream, writer, None, True, Metrics()):
        pass
    return (time.perf_counter() - started) / n * 1e6


async def main(n: int) -> None:
    text: list[float] = []
    tools: list[float] = []
    await per_chunk_us(n, False)  # warm up
    for _ in range(7):
        text.append(await per_chunk_us(n, False))
        tools.append(await per_chunk_us(n, True))
    t, c = statistics.median(text), statistics.median(tools)
    sys.stdout.write(
        f"text stream:      {t:.2f} us/chunk\ntool-call stream: {c:.2f} us/chunk "
        f"({(c - t) / t:+.0%})\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20_000, help="chunks per stream")
    asyncio.run(main(parser.parse_args().n))
