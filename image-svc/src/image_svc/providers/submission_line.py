"""image-svc's own line for a provider that runs one job at a time and cannot take a queued job
back (AUTOMATIC1111: its API has no way to remove a waiting txt2img, only to interrupt the
running one). image-svc sends such an endpoint one job at a time and keeps the rest waiting
here, where a job whose caller leaves is simply dropped: it never reaches the provider, so it is
never run nor charged.

One line per endpoint (base URL and credentials: what the provider tells apart). Positions are
the jobs ahead of a waiting one, the running job included, as in `Queued.position`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class Ticket:
    """One job's place in a line."""

    __slots__ = ("_line", "moved")

    def __init__(self, line: _Line) -> None:
        self._line: _Line | None = line
        # Set whenever the line moves (a job ahead left, or this one's turn came).
        self.moved = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._line is not None and self._line.running is self

    def position(self) -> int:
        line = self._line
        if line is None or line.running is self:
            return 0
        return line.waiting.index(self) + (line.running is not None)

    async def positions(self) -> AsyncIterator[int]:
        """Each new position while the job waits; ends when it is the job's turn."""
        told = -1
        while not self.running:
            # Cleared before reading the position: a move made while the caller handles the
            # position just yielded sets it again, so the wait below cannot miss it.
            self.moved.clear()
            position = self.position()
            if position != told:
                told = position
                yield position
                continue
            await self.moved.wait()

    def leave(self) -> None:
        """Done, or given up: the next job's turn if this one ran. Safe to call again."""
        line, self._line = self._line, None
        if line is not None:
            line.remove(self)


class _Line:
    __slots__ = ("_key", "_lines", "running", "waiting")

    def __init__(self, lines: SubmissionLines, key: tuple[str, str]) -> None:
        self._lines = lines
        self._key = key
        self.running: Ticket | None = None
        self.waiting: list[Ticket] = []

    def remove(self, ticket: Ticket) -> None:
        if self.running is ticket:
            self.running = None
        elif ticket in self.waiting:
            self.waiting.remove(ticket)
        if self.running is None and self.waiting:
            self.running = self.waiting.pop(0)
        for waiter in (self.running, *self.waiting):
            if waiter is not None:
                waiter.moved.set()
        if self.running is None:
            self._lines.forget(self._key, self)


class SubmissionLines:
    """The lines of one image-svc, by endpoint; an idle line is dropped (BYOK base URLs come and
    go with users' settings)."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], _Line] = {}

    def join(self, base_url: str, credentials: str) -> Ticket:
        key = (base_url.rstrip("/"), credentials)
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(self, key)
        ticket = Ticket(line)
        if line.running is None:
            line.running = ticket
        else:
            line.waiting.append(ticket)
        return ticket

    def forget(self, key: tuple[str, str], line: _Line) -> None:
        if self._lines.get(key) is line:
            del self._lines[key]

    def __len__(self) -> int:
        return len(self._lines)
