"""What one stand-in knows: its keys, models and knobs, the log of requests it received,
outcome counters, and a way for tests to wait until a condition on them holds."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from provider_stand_ins.behaviour import Behaviour

# Outcomes of a request, as recorded in the log and counted in ``stats``.
IN_PROGRESS = "in_progress"
COMPLETED = "completed"  # the whole response was sent
REJECTED = "rejected"  # refused like the provider would: bad key, bad request, unknown model
FAILED = "failed"  # failed on purpose by the error_status knob
CANCELLED = "cancelled"  # the client closed the connection before the end of the response
DISCONNECTED = "disconnected"  # the stand-in closed the connection on purpose mid-stream
STREAM_ERROR = "stream_error"  # a mid-stream error event ended the stream
ABANDONED = "abandoned"  # the server stopped while the request was waiting
OUTCOMES = (COMPLETED, REJECTED, FAILED, CANCELLED, DISCONNECTED, STREAM_ERROR, ABANDONED)


class RequestRecord:
    """One request the stand-in received. Mutable until its outcome is set."""

    __slots__ = (
        "body",
        "chunks_sent",
        "images",
        "key",
        "method",
        "model",
        "outcome",
        "path",
        "provider",
        "seq",
        "status",
        "stream",
    )

    def __init__(self, seq: int, provider: str, method: str, path: str, key: str | None) -> None:
        self.seq = seq
        self.provider = provider
        self.method = method
        self.path = path
        self.key = key
        self.model: str | None = None
        self.body: Any = None  # a generation request's parsed JSON body, for tests to inspect
        self.stream = False
        self.images = 0
        self.chunks_sent = 0
        self.status: int | None = None
        self.outcome = IN_PROGRESS

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"RequestRecord({self.to_dict()!r})"


class StandInState:
    """Keys, models, knobs, request log and counters of one stand-in; shared by its handlers."""

    def __init__(
        self,
        provider: str,
        *,
        keys: Iterable[str],
        models: Iterable[str],
        behaviour: Behaviour,
        log_size: int = 10_000,
    ) -> None:
        self.provider = provider
        self.keys = frozenset(keys)
        self.models = tuple(models)
        self._model_set = frozenset(self.models)
        self._initial_behaviour = behaviour
        self.behaviour = behaviour.updated({})
        self._log: deque[RequestRecord] = deque(maxlen=log_size)
        self._seq = 0
        self._counts = dict.fromkeys(self._count_names(), 0)
        self._in_flight = 0
        self._waiters: list[asyncio.Future[None]] = []
        # Resolved when the server begins to stop, so waiting requests give up.
        self.closing: asyncio.Future[None] | None = None

    @staticmethod
    def _count_names() -> tuple[str, ...]:
        streams = ("streams_started", "streams_completed", "streams_cancelled")
        return ("requests", *OUTCOMES, *streams)

    # --- knobs -----------------------------------------------------------------------------

    def set_behaviour(self, **knobs: Any) -> Behaviour:
        """Change knobs for the following requests; returns the new behaviour."""
        self.behaviour = self.behaviour.updated(knobs)
        return self.behaviour

    def set_keys(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)

    def reset(self) -> None:
        """Forget the request log and counters and restore the knobs given at construction."""
        self.behaviour = self._initial_behaviour.updated({})
        self._log.clear()
        self._counts = dict.fromkeys(self._count_names(), 0)
        self._notify()

    def key_accepted(self, key: str | None) -> bool:
        return self.behaviour.accept_any_key or (key is not None and key in self.keys)

    def model_known(self, model: str) -> bool:
        return self.behaviour.accept_any_model or model in self._model_set

    def take_forced_error(self) -> int | None:
        """The status this generation request must fail with, counting down ``fail_times``."""
        behaviour = self.behaviour
        if behaviour.error_status is None:
            return None
        if behaviour.fail_times is None:
            return behaviour.error_status
        if behaviour.fail_times <= 0:
            return None
        behaviour.fail_times -= 1
        return behaviour.error_status

    # --- request log -----------------------------------------------------------------------

    def begin(self, method: str, path: str, key: str | None) -> RequestRecord:
        self._seq += 1
        record = RequestRecord(self._seq, self.provider, method, path, key)
        self._log.append(record)
        self._counts["requests"] += 1
        self._in_flight += 1
        if self._waiters:
            self._notify()
        return record

    def start_stream(self, record: RequestRecord) -> None:
        record.stream = True
        self._counts["streams_started"] += 1

    def finish(self, record: RequestRecord, outcome: str, status: int | None = None) -> None:
        if record.outcome != IN_PROGRESS:
            return
        record.outcome = outcome
        if status is not None:
            record.status = status
        counts = self._counts
        counts[outcome] += 1
        if record.stream:
            if outcome == COMPLETED:
                counts["streams_completed"] += 1
            elif outcome == CANCELLED:
                counts["streams_cancelled"] += 1
        self._in_flight -= 1
        if self._waiters:
            self._notify()

    @property
    def requests(self) -> list[RequestRecord]:
        """The logged requests, oldest first (bounded by ``log_size``)."""
        return list(self._log)

    @property
    def last_request(self) -> RequestRecord | None:
        return self._log[-1] if self._log else None

    @property
    def stats(self) -> dict[str, int]:
        """Counters: requests, one per outcome, streams_started/completed/cancelled, in_flight."""
        return {**self._counts, "in_flight": self._in_flight}

    # --- waiting ---------------------------------------------------------------------------

    # A timeout argument keeps test code to one line: await stand_in.wait_for(cond, 2).
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``predicate()`` holds; it is re-checked on every log change.

        Raises TimeoutError if it does not hold within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def changed(self) -> None:
        """Re-check waiting predicates: something besides the log changed (an image job's step)."""
        if self._waiters:
            self._notify()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
