"""Pure-ASGI middleware every request passes: the request id and the body size limit.

Pure ASGI (no BaseHTTPMiddleware) so that they cost a few microseconds and never buffer or
break a streaming response.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_body

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID = 128
# Printable ASCII: what proxies in front send (ids like "uuid#3"), and safe in a gRPC metadata
# value and a response header.
_REQUEST_ID = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_REQUEST_ID)


async def send_error(
    send: Send, status: int, message: str, code: str, param: str | None = None
) -> None:
    body = orjson.dumps(error_body(status, message, code=code, param=param))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def request_id(scope: Scope) -> str:
    """The id RequestIdMiddleware gave this request."""
    return scope["state"]["request_id"]


class RequestIdMiddleware:
    """Takes the caller's x-request-id (validated) or makes one, and echoes it on the response.

    The id is a correlation id only: it is logged and passed on so that the lines of one request
    can be found in every service. It never keys money (text-svc mints the hold and usage event
    id of each call), so any caller may send any id, including one another user sent: nothing
    is looked up by it and nothing tells whether it was seen before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                given = value
                break
        if not given:  # absent, or empty
            rid = uuid.uuid4().hex.encode()
        elif _REQUEST_ID.fullmatch(given):
            rid = given
        else:
            await send_error(
                send,
                400,
                f"invalid x-request-id: use 1 to {MAX_REQUEST_ID} printable ASCII characters",
                "invalid_request_id",
                "x-request-id",
            )
            return
        scope.setdefault("state", {})["request_id"] = rid.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once when Content-Length says so, else as soon as the
    chunks that arrived exceed it (the app is then told the client went away)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, by_prefix: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Routes whose bodies may be larger (images in the JSON), by path prefix.
        self._by_prefix = tuple((by_prefix or {}).items())

    def _too_large(self, limit: int) -> str:
        return f"the request body is larger than the limit of {limit} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for prefix, larger in self._by_prefix:
            if scope["path"].startswith(prefix):
                limit = larger
                break
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
                break
        if length is not None:
            # The server delivers no more than Content-Length, so declared bodies need no counting.
            if not length.isdigit() or int(length) > limit:
                await send_error(send, 413, self._too_large(limit), "request_too_large")
                return
            await self.app(scope, receive, send)
            return

        received = 0
        responded = False

        async def counting_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not responded:
                    responded = True
                    await send_error(send, 413, self._too_large(limit), "request_too_large")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not responded:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not responded:
                raise
