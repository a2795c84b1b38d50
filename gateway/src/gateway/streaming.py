"""Answers that wait on a model: a disconnect watcher, and the SSE response of a model stream.

A client that goes away must stop the model call at once (and so its spending): once the body
has been read, the next ASGI message is http.disconnect, so one task awaiting it per request
is enough. (Starlette's StreamingResponse does the same with an anyio task group around the
whole stream, which costs more per stream than the rest of the gateway's work.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


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
