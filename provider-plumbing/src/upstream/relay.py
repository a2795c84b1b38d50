"""A streamed RPC's provider stream, ended exactly once: by the servicer generator's `finally`,
or — when the RPC is cancelled while the generator waits at a yield, where grpc never resumes
it — by the RPC's done callback, which closes the provider connection at once instead of
whenever the abandoned generator is collected (and publishes the usage first)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from upstream.attempts import OpenStream

M = TypeVar("M")

# Clean-ups started from done callbacks, kept referenced until they finish.
_cleanups: set[asyncio.Task[None]] = set()


class StreamRelay:
    __slots__ = ("_publish", "at_yield", "ended", "ended_event", "stream")

    def __init__(self, publish: Callable[[str], None]) -> None:
        self._publish = publish  # the usage event with this outcome; called once
        self.stream: OpenStream[Any, Any] | None = None
        self.at_yield = False
        self.ended = False
        self.ended_event = asyncio.Event()

    def suspended(self, message: M) -> M:
        """Wrap each yielded message: `yield relay.suspended(m)` then `relay.resumed()`."""
        self.at_yield = True
        return message

    def resumed(self) -> None:
        self.at_yield = False

    async def end(self, outcome: str) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            # The record is final: publish first, so closing a slow upstream cannot delay it.
            self._publish(outcome)
            if self.stream is not None:
                await self.stream.aclose()
        finally:
            self.ended_event.set()

    def end_if_abandoned(self, _: object = None) -> None:
        """The RPC's done callback: if the generator sits at a yield it will not run again, so
        end the stream now as a client disconnect."""
        if self.at_yield and not self.ended:
            task = asyncio.get_running_loop().create_task(self.end("client_disconnect"))
            _cleanups.add(task)
            task.add_done_callback(_cleanups.discard)
