"""How the gateway is served: uvicorn on httptools, with the request head bounded.

httptools (llhttp) has no limit of its own on a request head: a header value is gathered in
memory however long it grows, so one client could make the gateway hold a 64 MB header. The
protocol here counts the bytes of each request head (request line and headers) and the number
of headers while they arrive, and answers 431 and closes the connection as soon as either
passes its limit, without reading the rest.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.environment import Settings
from gateway.errors import error_body

log = logging.getLogger("gateway.server")


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head that is over a limit."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request head; `bounded_protocol` sets
    them on a subclass (uvicorn builds the protocol itself, with its own arguments)."""

    max_head_bytes = 32 * 1024
    max_headers = 100
    # After a 431, how long the rest of what the client sends is read and dropped before the
    # connection closes. Closing at once, with the client's bytes unread, makes the kernel reset
    # the connection, and the client would then lose the 431 it was sent (nginx's
    # lingering_close does the same).
    linger_s = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes received since the current head began; None once the head is complete.
        self._head_bytes: int | None = 0
        self._header_count = 0
        self._head_began = False
        self._refusal: str | None = None
        self._linger: asyncio.TimerHandle | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._header_count = 0
        self._head_began = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refusal = (
                f"the request has more than {self.max_headers} headers: send fewer headers"
            )
            # Stops the parser; uvicorn then answers through send_400_response (below).
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # lingering after a 431: dropped unread
        self._head_began = False
        super().data_received(data)
        if self._head_bytes is None or self._refusal is not None or self.transport.is_closing():
            return
        # Still inside a head after this chunk. A chunk in which a new request began may also
        # hold the end of the one before, so its bytes are not counted: the parser then holds
        # at most the limit and two reads of the socket.
        if not self._head_began:
            self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refusal = (
                f"the request line and headers are larger than the limit of "
                f"{self.max_head_bytes} bytes: send shorter headers"
            )
            self.send_400_response(self._refusal)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a request the parser refused is text/plain; the gateway's is its
        # JSON error shape, like every other error.
        if self._refusal is None:
            self._refusal = "the request is not valid HTTP/1.1: check the request line and headers"
            self._answer(400, "Bad Request", "invalid_http")
        else:
            log.warning("request head refused: %s", self._refusal)
            self._answer(431, "Request Header Fields Too Large", "request_header_too_large")

    def _answer(self, status: int, reason: str, code: str) -> None:
        assert self._refusal is not None
        body = orjson.dumps(error_body(status, self._refusal, code=code))
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())
            + b"content-type: application/json\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(self.linger_s, self.transport.close)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)


def bounded_protocol(max_head_bytes: int, max_headers: int) -> type[asyncio.Protocol]:
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "max_headers": max_headers},
    )


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's config for serving `app` with the limits of `settings`; `options` are passed on
    (host, port, loop, logging...)."""
    return uvicorn.Config(
        app,
        http=bounded_protocol(settings.max_header_bytes, settings.max_headers),
        **options,
    )
