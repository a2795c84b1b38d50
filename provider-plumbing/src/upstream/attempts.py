"""The attempt policy: how one request is tried against its routes, the same for every provider
and every model service, whatever is attempted (a unary call, opening a stream):

- a time limit to the first output (`first_output_timeout_s`) and between streamed events (idle);
- retries of 429/5xx/529/connection failures only while nothing has been received, honouring
  retry-after up to `max_retry_wait_s` (a longer hint is handed to the caller instead);
- the next route (the fallback) when a route is down (UNAVAILABLE/ERROR) before any output.

What the caller is told about a failure is the service's: a `RouteFailed` names the route and the
ProviderError.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from upstream.failures import Failure, ProviderError
from upstream.pool import C, ClientPool, Endpoint, Lease

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
# Failures worth trying the next route for: the route is down, not the request wrong.
FALLBACK_ON = frozenset({Failure.UNAVAILABLE, Failure.ERROR})


@dataclass(frozen=True, slots=True)
class Route:
    """One provider endpoint and model to try."""

    endpoint: Endpoint
    model: str

    @property
    def provider(self) -> str:
        return self.endpoint.provider


@dataclass(frozen=True, slots=True)
class AttemptPolicy:
    first_output_timeout_s: float  # to the first output (a unary call: to the whole answer)
    idle_timeout_s: float  # longest silence between two streamed events
    max_retries: int  # per route, only before any output
    max_retry_wait_s: float  # a longer retry-after is not waited for


class RouteFailed(Exception):
    """The request failed before any output: `error` is what `route` (the last tried) said."""

    def __init__(self, route: Route, error: ProviderError) -> None:
        super().__init__(error.detail)
        self.route = route
        self.error = error


class OpenStream(Generic[C, E]):
    """A stream whose first event has arrived (so retries and fallback are over). Iterating
    enforces the idle timeout; `aclose` closes the upstream HTTP stream (idempotent) and gives
    the client back to the pool."""

    def __init__(
        self,
        route: Route,
        first: E,
        events: AsyncGenerator[E, None],
        lease: Lease[C],
        clients: ClientPool[C],
        idle_timeout: float,
    ) -> None:
        self.route = route
        self._first: E | None = first
        self._events = events
        self._lease = lease
        self._clients = clients
        self._idle = idle_timeout
        self._closed = False

    def __aiter__(self) -> OpenStream[C, E]:
        return self

    async def __anext__(self) -> E:
        if self._first is not None:
            event, self._first = self._first, None
            return event
        try:
            async with asyncio.timeout(self._idle):
                return await anext(self._events)
        except TimeoutError:
            raise ProviderError(
                Failure.TIMEOUT, f"no output for {self._idle:g}s mid-answer"
            ) from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._events.aclose()
        finally:
            self._clients.release(self._lease)


class Attempts(Generic[C]):
    """Runs attempts with the clients of one pool. `deadline` is on the event loop's clock
    (loop.time()): the caller's own deadline, which bounds every attempt and retry; each attempt
    also has `first_output_timeout_s`. `log_extra` goes on the fallback log line."""

    def __init__(self, clients: ClientPool[C], policy: AttemptPolicy) -> None:
        self._clients = clients
        self._policy = policy

    async def call(
        self,
        routes: Sequence[Route],
        deadline: float,
        once: Callable[[C, Route], Awaitable[T]],
        *,
        log_extra: Mapping[str, str] | None = None,
    ) -> tuple[Route, T]:
        """The answer of the first route that gives one; raises RouteFailed."""

        def attempt(route: Route) -> Callable[[], Awaitable[T]]:
            return lambda: self._call_once(route, deadline, once)

        return await self._routes(routes, deadline, attempt, log_extra)

    async def open_stream(
        self,
        routes: Sequence[Route],
        deadline: float,
        events: Callable[[C, Route], AsyncGenerator[E, None]],
        *,
        log_extra: Mapping[str, str] | None = None,
    ) -> OpenStream[C, E]:
        """A stream whose first event has arrived; raises RouteFailed. `events` must close the
        upstream HTTP stream when closed early."""

        def attempt(route: Route) -> Callable[[], Awaitable[OpenStream[C, E]]]:
            return lambda: self._open_once(route, deadline, events)

        _, stream = await self._routes(routes, deadline, attempt, log_extra)
        return stream

    async def _routes(
        self,
        routes: Sequence[Route],
        deadline: float,
        attempt: Callable[[Route], Callable[[], Awaitable[T]]],
        log_extra: Mapping[str, str] | None,
    ) -> tuple[Route, T]:
        for i, route in enumerate(routes):
            try:
                return route, await self._retrying(route, deadline, attempt(route))
            except ProviderError as err:
                if i + 1 < len(routes) and err.failure in FALLBACK_ON:
                    nxt = routes[i + 1]
                    log.warning(
                        "%s %s failed before any output (%s); falling back to %s %s",
                        route.provider,
                        route.model,
                        err.detail,
                        nxt.provider,
                        nxt.model,
                        extra=dict(log_extra or {}),
                    )
                    continue
                raise RouteFailed(route, err) from None
        raise ValueError("an attempt needs at least one route")

    async def _retrying(
        self, route: Route, deadline: float, attempt: Callable[[], Awaitable[T]]
    ) -> T:
        tries = 0
        while True:
            try:
                return await attempt()
            except ProviderError as err:
                wait = self._retry_wait(err, tries, deadline)
                if wait is None:
                    raise
                tries += 1
                log.info(
                    "%s answered %s; retry %d in %.2fs",
                    route.provider,
                    err.status or err.failure.value,
                    tries,
                    wait,
                )
                await asyncio.sleep(wait)

    def _retry_wait(self, err: ProviderError, tries: int, deadline: float) -> float | None:
        p = self._policy
        if not err.retryable or tries >= p.max_retries:
            return None
        if err.retry_after is not None:
            if err.retry_after > p.max_retry_wait_s:
                return None  # the caller gets the 429/503 with the hint
            wait = err.retry_after
        else:
            wait = min(0.25 * 2**tries, 4.0) * (0.5 + random.random() / 2)
        return wait if asyncio.get_running_loop().time() + wait < deadline else None

    def _attempt_deadline(self, deadline: float) -> float:
        now = asyncio.get_running_loop().time()
        return min(now + self._policy.first_output_timeout_s, deadline)

    async def _call_once(
        self, route: Route, deadline: float, once: Callable[[C, Route], Awaitable[T]]
    ) -> T:
        lease = self._clients.acquire(route.endpoint)
        try:
            async with asyncio.timeout_at(self._attempt_deadline(deadline)):
                return await once(lease.client, route)
        except TimeoutError:
            raise ProviderError(Failure.TIMEOUT, "no answer in time") from None
        finally:
            self._clients.release(lease)

    async def _open_once(
        self,
        route: Route,
        deadline: float,
        open_events: Callable[[C, Route], AsyncGenerator[E, None]],
    ) -> OpenStream[C, E]:
        lease = self._clients.acquire(route.endpoint)
        events = open_events(lease.client, route)
        try:
            async with asyncio.timeout_at(self._attempt_deadline(deadline)):
                first = await anext(events)
        except BaseException as err:
            try:
                await events.aclose()
            finally:
                self._clients.release(lease)
            if isinstance(err, TimeoutError):
                raise ProviderError(Failure.TIMEOUT, "no output in time") from None
            if isinstance(err, StopAsyncIteration):
                raise ProviderError(Failure.ERROR, "the stream ended without an answer") from None
            raise
        return OpenStream(route, first, events, lease, self._clients, self._policy.idle_timeout_s)
