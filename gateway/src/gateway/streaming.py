"""Chat completion streams as server-sent events, in one place: the gRPC model stream and its
cancellation (`ModelStream`), the disconnect watcher, the event order (role chunk, content
chunks, finish chunk, the usage chunk when asked, [DONE]; an error event after the status line),
the bytes of each event (`ChunkWriter`, byte for byte as OpenAI sends them) and the transport
(`EventStreamResponse`). A route hands `start_chat_stream` a running stream and gets the answer.

The multimodal route streams the same chat shapes (the same GenerateStreamResponse events), so it
reuses this module as it is; the image route will add its own writer (image_generation.* and
progress events) over the same watcher, response and cancellation.

A client that goes away must stop the model call at once (and so its spending): once the body
has been read, the next ASGI message is http.disconnect, so one task awaiting it per request
is enough. (Starlette's StreamingResponse does the same with an anyio task group around the
whole stream, which costs more per stream than the rest of the gateway's work.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.chat import completion_id
from gateway.errors import ApiError, from_remote
from gateway.metrics import Metrics
from grpc_stubs.text.v1 import text_pb2
from svc_common.errors import from_rpc_error

log = logging.getLogger("gateway.text")
CREDITS_HEADER = "x-credits-remaining"
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class CallCancelled(Exception):
    """The call was cancelled by `cancel()` (its client went away)."""


def cancelled_by_us(call: Any) -> bool:
    # A locally cancelled call raises asyncio.CancelledError where it is awaited. That is ours to
    # handle, unless this task is itself being cancelled (e.g. at shutdown).
    task = asyncio.current_task()
    return call.cancelled() and (task is None or task.cancelling() == 0)


class ModelStream:
    """A running GenerateStream call. `read()` returns None at the end; `cancel()` stops it
    (and, through text-svc, the provider call)."""

    def __init__(self, call: Any, backend: str) -> None:
        self._call = call
        self._backend = backend

    async def read(self) -> text_pb2.GenerateStreamResponse | None:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as err:
            raise from_remote(from_rpc_error(err), self._backend) from None
        except asyncio.CancelledError:
            if cancelled_by_us(self._call):
                raise CallCancelled from None
            raise
        return None if message is grpc.aio.EOF else message

    def cancel(self) -> None:
        self._call.cancel()


class DisconnectWatcher:
    """Calls `on_disconnect()` when the client disconnects, until `stop()`."""

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        self.gone = False
        self._task = asyncio.create_task(self._watch(receive, on_disconnect))

    async def _watch(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        on_disconnect()

    def stop(self) -> None:
        self._task.cancel()


class EventStreamResponse(Response):
    """Server-sent events from `events`, each chunk sent as it comes.

    `watcher` (started by the handler before the first event) keeps watching for a disconnect
    while the events are sent; when the response ends, however it ends, the watcher stops and
    `events` is closed, so its `finally` (cancelling the model call) runs at once.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        watcher: DisconnectWatcher,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.events = events
        self.watcher = watcher
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.events:
                if self.watcher.gone:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not self.watcher.gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.watcher.stop()
            await self.events.aclose()  # type: ignore[attr-defined]


async def start_chat_stream(
    request: Request, stream: ModelStream, model: str, include_usage: bool
) -> Response:
    """The SSE answer to a chat completion with stream: true, from a running model stream."""
    metrics: Metrics = request.app.state.metrics
    watcher = DisconnectWatcher(request.receive, stream.cancel)
    # Wait for the first event before answering: an error here (no credits, bad key, unknown
    # model) is still a plain HTTP error with the right status, which SDKs turn into the right
    # exception.
    try:
        first = await stream.read()
    except BaseException as err:
        watcher.stop()
        stream.cancel()
        if isinstance(err, CallCancelled):
            return Response(status_code=499)
        raise
    headers = dict(STREAM_HEADERS)
    if first is not None and first.WhichOneof("event") == "start":
        start = first.start
        writer = ChunkWriter(
            start.id,
            start.model or model,
            start.created or int(time.time()),
            include_usage,
        )
        if start.balance_micros >= 0:
            headers[CREDITS_HEADER] = str(start.balance_micros)
        pending = None
    else:
        # No start event (the stream failed first): no generation id, so a fresh one.
        writer = ChunkWriter(uuid.uuid4().hex, model, int(time.time()), include_usage)
        pending = first
    return EventStreamResponse(
        _events(stream, writer, pending, include_usage, metrics), watcher, headers
    )


async def _events(
    stream: ModelStream,
    writer: ChunkWriter,
    pending: text_pb2.GenerateStreamResponse | None,
    include_usage: bool,
    metrics: Metrics,
) -> AsyncIterator[bytes]:
    metrics.streams.inc()
    try:
        yield writer.role()
        message = pending or await stream.read()
        while message is not None:
            kind = message.WhichOneof("event")
            if kind == "delta":
                delta = message.delta
                if delta.logprobs_json:
                    yield writer.content_with_logprobs(delta.content, delta.logprobs_json)
                elif delta.content:
                    yield writer.content(delta.content)
                elif delta.tool_calls:
                    yield writer.tool_calls(delta.tool_calls)
            elif kind == "finish":
                # The end in one write: the finish chunk, the usage chunk, [DONE].
                end = writer.finish(message.finish.finish_reason)
                if include_usage:
                    usage = message.finish.usage
                    end += writer.usage(usage.input_tokens, usage.output_tokens)
                yield end + ChunkWriter.DONE
                await _drain(stream)
                return
            message = await stream.read()
        yield ChunkWriter.error(
            ApiError(502, "the model's stream ended before it finished", code="upstream_error")
        )
    except ApiError as err:
        # The status line has gone out: the error becomes one event, which the openai SDK raises
        # as APIError, and the stream ends without [DONE].
        yield ChunkWriter.error(err)
    except CallCancelled:
        return  # the client went away: nobody to tell
    except Exception:
        # A bug of ours after the status line: the client still gets an error event it can
        # read, not a connection cut mid-stream.
        log.exception("the stream failed after its first event")
        yield ChunkWriter.error(
            ApiError(500, "the gateway failed while streaming the answer", code="server_error")
        )
    finally:
        stream.cancel()
        metrics.streams.dec()


async def _drain(stream: ModelStream) -> None:
    """Reads the call to its end rather than cancelling it: text-svc may still be settling the
    request (its usage event) after the last event, and a cancel could cut that short."""
    try:
        while await stream.read() is not None:
            pass
    except ApiError:
        pass  # the answer is complete; a late failure is text-svc's to log


class ChunkWriter:
    """Server-sent events of one stream, byte for byte as OpenAI sends them.

    The envelope around each delta is built once per stream; a chunk is then three joins.
    """

    DONE = b"data: [DONE]\n\n"

    def __init__(self, generation_id: str, model: str, created: int, include_usage: bool) -> None:
        self._head = orjson.dumps(
            {
                "id": completion_id(generation_id),
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
            }
        )[:-1]
        self._include_usage = include_usage
        self._open = b"data: " + self._head + b',"choices":[{"index":0,"delta":'
        tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._close = b',"logprobs":null,"finish_reason":null}]' + tail
        self._logprobs_close = b',"refusal":null},"finish_reason":null}]' + tail
        self._finish_tail = b"}]" + tail

    def role(self) -> bytes:
        return self._open + b'{"role":"assistant","content":""}' + self._close

    def content(self, text: str) -> bytes:
        return self._open + orjson.dumps({"content": text}) + self._close

    def content_with_logprobs(self, text: str, logprobs_json: str) -> bytes:
        return (
            self._open
            + orjson.dumps({"content": text})
            + b',"logprobs":{"content":'
            + logprobs_json.encode()
            + self._logprobs_close
        )

    def tool_calls(self, calls: Sequence[text_pb2.ToolCallDelta]) -> bytes:
        """As OpenAI streams them: a call's first piece has its id, type and name, with
        arguments ""; the later pieces only the index and more arguments."""
        if len(calls) == 1 and not calls[0].id and not calls[0].name:
            # The usual chunk: more arguments of one call, from a byte template like content.
            call = calls[0]
            return b"".join(
                (
                    self._open,
                    b'{"tool_calls":[{"index":',
                    str(call.index).encode(),
                    b',"function":{"arguments":',
                    orjson.dumps(call.arguments),
                    b"}}]}",
                    self._close,
                )
            )
        pieces: list[dict[str, Any]] = []
        for call in calls:
            if call.id or call.name:
                function = {"name": call.name, "arguments": call.arguments}
                pieces.append(
                    {"index": call.index, "id": call.id, "type": "function", "function": function}
                )
            else:
                pieces.append({"index": call.index, "function": {"arguments": call.arguments}})
        return self._open + orjson.dumps({"tool_calls": pieces}) + self._close

    def finish(self, reason: str) -> bytes:
        return (
            self._open
            + b'{},"logprobs":null,"finish_reason":'
            + orjson.dumps(reason or "stop")
            + self._finish_tail
        )

    def usage(self, input_tokens: int, output_tokens: int) -> bytes:
        usage = orjson.dumps(
            {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            }
        )
        return b"data: " + self._head + b',"choices":[],"usage":' + usage + b"}\n\n"

    @staticmethod
    def error(err: ApiError) -> bytes:
        return b"data: " + orjson.dumps(err.body()) + b"\n\n"
