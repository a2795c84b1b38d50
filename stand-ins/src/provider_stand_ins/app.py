"""The raw ASGI app every stand-in runs: request plumbing, the control endpoints under
``/_stand_in/``, and the generation flow (forced failures, delays, streaming) the providers share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson

from provider_stand_ins.behaviour import Behaviour
from provider_stand_ins.state import (
    ABANDONED,
    CANCELLED,
    COMPLETED,
    DISCONNECTED,
    FAILED,
    REJECTED,
    STREAM_ERROR,
    RequestRecord,
    StandInState,
)

Headers = list[tuple[bytes, bytes]]
Handler = Callable[["Exchange"], Awaitable[None]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
CONTROL_PREFIX = "/_stand_in/"


class Exchange:
    """One HTTP request and its response, with waits that notice when the client leaves."""

    __slots__ = ("_closing", "_watcher", "method", "path", "receive", "scope", "send")

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, closing: Any) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self._closing: asyncio.Future[None] | None = closing
        # Created on the first wait only: a stream sent without waits needs no watcher task.
        self._watcher: asyncio.Task[None] | None = None

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None

    def bearer_key(self) -> str | None:
        value = self.header(b"authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else value

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.scope["query_string"].decode("latin-1")))

    async def read_body(self) -> bytes:
        message = await self.receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body
        parts = [body]
        while message.get("more_body", False):
            message = await self.receive()
            parts.append(message.get("body", b""))
        return b"".join(parts)

    async def read_json(self) -> Any:
        """The body parsed as JSON; raises ValueError if it is not JSON."""
        return orjson.loads(await self.read_body())

    # --- responding ------------------------------------------------------------------------

    async def respond(self, status: int, body: bytes, headers: Headers = JSON_HEADERS) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(
        self, status: int, payload: Any, headers: Headers = JSON_HEADERS
    ) -> None:
        await self.respond(status, orjson.dumps(payload), headers)

    async def start(self, status: int, headers: Headers) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, body: bytes) -> None:
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def end(self, body: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": body})

    async def drop_connection(self) -> None:
        """Close the connection mid-response, as a crashed upstream would."""
        transport = getattr(getattr(self.send, "__self__", None), "transport", None)
        if transport is None:
            return  # unknown server: returning without finishing makes it close the connection
        transport.close()
        # Wait until the server has seen the connection go, so it does not report an
        # unfinished response as an application error.
        await self._client_left()

    # --- waiting ---------------------------------------------------------------------------

    def client_gone(self) -> bool:
        watcher = self._watcher
        return watcher is not None and watcher.done() and not watcher.cancelled()

    async def wait(self, seconds: float) -> str | None:
        """Wait ``seconds`` (forever if negative); the outcome that ends the request early, if any.

        Returns CANCELLED if the client leaves, ABANDONED if the server stops, else None.
        """
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._client_left())
        waitables: set[asyncio.Future[Any]] = {self._watcher}
        if self._closing is not None:
            waitables.add(self._closing)
        await asyncio.wait(
            waitables,
            timeout=None if seconds < 0 else seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._watcher.done():
            return CANCELLED
        if self._closing is not None and self._closing.done():
            return ABANDONED
        return None

    async def _client_left(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    def finish_waiting(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()


class StreamEncoder:
    """How one provider frames a streamed reply. Every method returns bytes ready to send."""

    def opening(self) -> Sequence[bytes]:
        """Events before the first content chunk."""
        return ()

    def piece(self, text: str) -> bytes:
        """One content chunk."""
        raise NotImplementedError

    def closing(self, sent: int, truncated: bool) -> Sequence[bytes]:
        """Events after the last content chunk; the last one ends the response."""
        raise NotImplementedError

    def error(self) -> bytes:
        """The provider's mid-stream error event."""
        raise NotImplementedError


class Provider:
    """One provider's routes and error format, on top of the shared generation flow."""

    name = "provider"
    stream_headers: Headers = SSE_HEADERS

    def __init__(self, state: StandInState) -> None:
        self.state = state

    def routes(self) -> dict[tuple[str, str], Handler]:
        """Exact (method, path) routes."""
        raise NotImplementedError

    async def unmatched(self, ex: Exchange) -> None:
        """A request no route matched; the provider's own 404."""
        raise NotImplementedError

    async def send_error(
        self, ex: Exchange, record: RequestRecord, status: int, outcome: str = REJECTED
    ) -> None:
        """Answer with the provider's error for ``status`` and record the outcome."""
        raise NotImplementedError

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A websocket connection (ComfyUI's ``/ws``); other providers refuse it."""
        await send({"type": "websocket.close", "code": 1000})

    def retry_headers(self, status: int) -> Headers:
        """Extra headers of an error response: ``retry-after`` on a 429."""
        if status != 429:
            return JSON_HEADERS
        return [*JSON_HEADERS, (b"retry-after", format_seconds(self.state.behaviour.retry_after_s))]

    # --- the shared generation flow ----------------------------------------------------------

    async def before_reply(self, ex: Exchange, record: RequestRecord, behaviour: Behaviour) -> bool:
        """Forced failures, hangs and time to first byte; False if the request is already over."""
        status = self.state.take_forced_error()
        if status is not None:
            await self.send_error(ex, record, status, FAILED)
            return False
        if behaviour.hang:
            self.state.finish(record, await ex.wait(-1) or ABANDONED)
            if record.outcome == ABANDONED:
                await ex.respond(503, b"", [])
            return False
        if behaviour.first_byte_delay_s:
            ended = await ex.wait(behaviour.first_byte_delay_s)
            if ended is not None:
                await self._end_early(ex, record, ended, started=False)
                return False
        return True

    async def reply_whole(
        self, ex: Exchange, record: RequestRecord, behaviour: Behaviour, words: int, body: bytes
    ) -> None:
        """Send a non-stream reply after the generation time of ``words`` words."""
        delay = behaviour.token_delay_s * words
        if delay:
            ended = await ex.wait(delay)
            if ended is not None:
                await self._end_early(ex, record, ended, started=False)
                return
        ex.finish_waiting()
        record.status = 200
        record.chunks_sent = words
        await ex.respond(200, body)
        self.state.finish(record, COMPLETED)

    async def reply_stream(
        self,
        ex: Exchange,
        record: RequestRecord,
        behaviour: Behaviour,
        pieces: Sequence[str],
        truncated: bool,
        encoder: StreamEncoder,
    ) -> None:
        """Stream ``pieces`` one per chunk, honouring delays, disconnects and error knobs."""
        state = self.state
        state.start_stream(record)
        record.status = 200
        await ex.start(200, self.stream_headers)
        for event in encoder.opening():
            await ex.chunk(event)
        delay = behaviour.token_delay_s
        cut_after = behaviour.disconnect_after_chunks
        error_after = behaviour.stream_error_after_chunks
        sent = 0
        for piece in pieces:
            if cut_after is not None and sent >= cut_after:
                break
            if error_after is not None and sent >= error_after:
                break
            if delay:
                ended = await ex.wait(delay)
                if ended is not None:
                    record.chunks_sent = sent
                    await self._end_early(ex, record, ended, started=True)
                    return
            await ex.chunk(encoder.piece(piece))
            sent += 1
        record.chunks_sent = sent
        if cut_after is not None:
            await ex.drop_connection()
            state.finish(record, DISCONNECTED)
            return
        if ex.client_gone():
            state.finish(record, CANCELLED)
            return
        ex.finish_waiting()
        if error_after is not None:
            await ex.end(encoder.error())
            state.finish(record, STREAM_ERROR)
            return
        *events, last = encoder.closing(sent, truncated)
        for event in events:
            await ex.chunk(event)
        await ex.end(last)
        state.finish(record, COMPLETED)

    async def _end_early(
        self, ex: Exchange, record: RequestRecord, ended: str, started: bool
    ) -> None:
        self.state.finish(record, ended)
        if ended == ABANDONED:
            if started:
                await ex.drop_connection()
            else:
                await ex.respond(503, b"", [])


class StandInApp:
    """The ASGI callable: control endpoints first, then the provider's routes."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.state = provider.state
        self._routes = provider.routes()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self.provider.websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send, self.state.closing)
        handler = self._routes.get((ex.method, ex.path))
        if handler is not None:
            await handler(ex)
        elif ex.path.startswith(CONTROL_PREFIX):
            await self._control(ex)
        else:
            await self.provider.unmatched(ex)

    async def _control(self, ex: Exchange) -> None:
        state = self.state
        action = (ex.method, ex.path[len(CONTROL_PREFIX) :])
        if action == ("GET", "requests"):
            await ex.respond_json(200, [record.to_dict() for record in state.requests])
        elif action == ("GET", "stats"):
            await ex.respond_json(200, state.stats)
        elif action == ("GET", "behaviour"):
            await ex.respond_json(200, state.behaviour.to_dict())
        elif action == ("POST", "behaviour"):
            await self._set_behaviour(ex)
        elif action == ("POST", "reset"):
            state.reset()
            await ex.respond_json(200, state.behaviour.to_dict())
        elif action == ("GET", "wait"):
            await self._wait(ex)
        else:
            await ex.respond_json(404, {"error": f"no control endpoint {ex.method} {ex.path}"})

    async def _set_behaviour(self, ex: Exchange) -> None:
        try:
            changes = await ex.read_json()
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of knobs")
            keys = changes.pop("keys", None)
            behaviour = self.state.behaviour.updated(changes)
        except ValueError as error:
            await ex.respond_json(400, {"error": str(error)})
            return
        self.state.behaviour = behaviour
        if keys is not None:
            self.state.set_keys(keys)
        await ex.respond_json(200, behaviour.to_dict())

    async def _wait(self, ex: Exchange) -> None:
        """Wait until every named counter reaches its value: ``?streams_cancelled=1&timeout=5``."""
        state = self.state
        try:
            query = ex.query()
            timeout = float(query.pop("timeout", "5"))
            targets = {name: int(value) for name, value in query.items()}
            unknown = set(targets) - set(state.stats)
            if unknown:
                raise ValueError(f"unknown counters {sorted(unknown)}; known: {list(state.stats)}")
        except ValueError as error:
            await ex.respond_json(400, {"error": str(error)})
            return

        def reached() -> bool:
            stats = state.stats
            return all(stats[name] >= value for name, value in targets.items())

        try:
            await state.wait_for(reached, timeout)
        except TimeoutError:
            await ex.respond_json(408, {"error": "timeout", "stats": state.stats})
            return
        await ex.respond_json(200, state.stats)


def format_seconds(seconds: float) -> bytes:
    """A header value in seconds: "2" for whole seconds, else "0.25"."""
    return str(int(seconds) if float(seconds).is_integer() else seconds).encode()
