"""A minimal OpenAI-shaped chat provider in raw asyncio, for `make bench`: cheap enough never to
be the bottleneck, so what the platform costs is what the benchmarks see.

    python -m bench.fake_provider --port 8123

- `POST <prefix>/v1/chat/completions`: a 20-word reply, whole or streamed (`stream: true`,
  one chunk per word, the usage chunk with `stream_options.include_usage`, then `[DONE]`).
  Whatever comes before `/v1` is a tag counted per request (`/r1/v1/...`): each text-svc replica
  of the replica benchmark gets its own base URL, so its own upstream calls count its share.
- `GET <prefix>/v1/models`: one model.
- `POST /_fake/config` `{"chunks": 64, "interval_ms": 20, "stamp": true}`: the shape of the next
  streams. With `stamp`, each chunk's content is `<seq>@<CLOCK_MONOTONIC seconds>;` taken just
  before it is written, so a client on this machine measures each chunk's delay end to end.
- `GET /_fake/stats`: requests per tag and this process's CPU seconds; `POST /_fake/reset`.

HTTP/1.1 keep-alive with Content-Length bodies only (what aiohttp, httpx and wrk send); no key
checks: any bearer key is accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter

import uvloop

WORDS = [f"word{i}" for i in range(20)]


class State:
    def __init__(self) -> None:
        self.chunks = 20
        self.interval_s = 0.0
        self.stamp = False
        self.requests: Counter[str] = Counter()


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 ",
            status.encode(),
            b"\r\ncontent-type: ",
            content_type,
            b"\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n\r\n",
            body,
        )
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Connection(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a stream is being written: later requests wait in the buffer
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        while self.transport is not None and not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path = head[0].split(" ")[:2]
            self._handle(method, path, body)

    def _handle(self, method: str, path: str, body: bytes) -> None:
        assert self.transport is not None
        state = self.state
        if path.endswith("/v1/chat/completions") and method == "POST":
            state.requests[path[: -len("/v1/chat/completions")] or "/"] += 1
            request = json.loads(body)
            model = request.get("model", "gpt-4o-mini")
            if request.get("stream"):
                self.busy = True
                usage = bool((request.get("stream_options") or {}).get("include_usage"))
                asyncio.get_running_loop().create_task(self._stream(model, usage))
                return
            content = " ".join(WORDS)
            reply = {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 20, "total_tokens": 23},
            }
            self.transport.write(_response("200 OK", json.dumps(reply).encode()))
        elif path.endswith("/v1/models"):
            models = {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
            self.transport.write(_response("200 OK", json.dumps(models).encode()))
        elif path == "/_fake/config" and method == "POST":
            config = json.loads(body)
            state.chunks = int(config.get("chunks", 20))
            state.interval_s = float(config.get("interval_ms", 0)) / 1000
            state.stamp = bool(config.get("stamp", False))
            self.transport.write(_response("200 OK", b"{}"))
        elif path == "/_fake/stats":
            stats = {"requests": dict(state.requests), "cpu_s": cpu_seconds()}
            self.transport.write(_response("200 OK", json.dumps(stats).encode()))
        elif path == "/_fake/reset" and method == "POST":
            state.requests.clear()
            self.transport.write(_response("200 OK", b"{}"))
        else:
            self.transport.write(_response("404 Not Found", b'{"error":"not found"}'))

    async def _stream(self, model: str, usage: bool) -> None:
        state = self.state
        chunks, interval, stamp = state.chunks, state.interval_s, state.stamp
        head = (
            b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":'
            + str(int(time.time())).encode()
            + b',"model":'
            + json.dumps(model).encode()
            + b',"choices":['
        )
        tail = b'],"usage":null}\n\n' if usage else b"]}\n\n"

        def event(delta: bytes, finish: bytes = b"null") -> bytes:
            choice = b'{"index":0,"delta":' + delta + b',"finish_reason":' + finish + b"}"
            return _chunk(head + choice + tail)

        try:
            if self.transport is None:
                return
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + event(b'{"role":"assistant","content":""}')
            )
            start = time.monotonic()
            for seq in range(chunks):
                if interval:
                    # Paced from the stream's start, so one late wake-up does not shift the rest.
                    delay = start + seq * interval - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await self.can_write.wait()
                if self.transport is None:
                    return
                if stamp:
                    text = f"{seq}@{time.monotonic():.6f};"
                else:
                    text = WORDS[seq % len(WORDS)] + " "
                self.transport.write(event(b'{"content":"' + text.encode() + b'"}'))
            closing = event(b"{}", b'"stop"')
            if usage:
                closing += _chunk(
                    head
                    + b'],"usage":{"prompt_tokens":3,"completion_tokens":'
                    + str(chunks).encode()
                    + b',"total_tokens":'
                    + str(chunks + 3).encode()
                    + b"}}\n\n"
                )
            if self.transport is not None:
                self.transport.write(closing + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        finally:
            self.busy = False
            if self.buffer:
                self._serve()


async def serve(port: int) -> None:
    state = State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
