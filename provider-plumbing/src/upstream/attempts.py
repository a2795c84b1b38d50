"""The attempt policy: how one request is tried against its routes, the same for every provider
and every model service, whatever is attempted (a unary call, opening a stream):

- a time limit to the first output (`first_output_timeout_s`) and between streamed events (idle);
- retries of 429/5xx/529/connection failures only while nothing has been received, honouring
  retry-after up to `max_retry_wait_s` (a longer hint is handed to the caller instead);
- the next route (the fallback) when a route is down (UNAVAILABLE/ERROR) before any output.

What the caller is told about a failure is the service's: a `RouteFailed` names the route and the
ProviderError.

Every attempt is measured per provider and model (svc_common.metrics' registry): its time to the
answer (a stream: to its first event) by outcome, and provider errors by failure, mid-stream ones
included. A model is a label only for the operator's endpoints and up to MAX_MODEL_LABELS
distinct ones; a model named in a user's own base-URL config, or any beyond, counts as "other".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Counter, Histogram

from svc_common.metrics import LATENCY_BUCKETS, REGISTRY
from upstream.failures import Failure, ProviderError
from upstream.pool import C, ClientPool, Endpoint, Lease

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
# Failures worth trying the next route for: the route is down, not the request wrong.
FALLBACK_ON = frozenset({Failure.UNAVAILABLE, Failure.ERROR})

MAX_MODEL_LABELS = 200
_ATTEMPT_SECONDS = Histogram(
    "provider_attempt_seconds",
    "One attempt at a provider: time to its answer (a stream: to its first event), by outcome",
    ["provider", "model", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
_PROVIDER_ERRORS = Counter(
    "provider_errors",
    "Provider failures by kind (auth, rate_limited, unavailable, error, timeout, ...), attempts"
    " and mid-stream failures alike",
    ["provider", "model", "failure"],
    registry=REGISTRY,
)
_labelled_models: set[tuple[str, str]] = set()


def _model_label(endpoint: Endpoint, model: str) -> str:
    """The model as a label value: never one from a user's own base URL (free text), and at most
    MAX_MODEL_LABELS distinct ones, so a label can neither carry what a user typed nor grow
    without bound."""
    if endpoint.user_base_url:
        return "other"
    key = (endpoint.provider, model)
    if key in _labelled_models:
        return model
    if len(_labelled_models) >= MAX_MODEL_LABELS:
        return "other"
    _labelled_models.add(key)
    return model


def _measured(route: Route, started: float, failure: Failure | None) -> None:
    model = _model_label(route.endpoint, route.model)
    outcome = "ok" if failure is None else failure.value
    _ATTEMPT_SECONDS.labels(route.provider, model, outcome).observe(time.perf_counter() - started)
    if failure is not None:
        _PROVIDER_ERRORS.labels(route.provider, model, failure.value).inc()


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
            self._failed(Failure.TIMEOUT)
            raise ProviderError(
                Failure.TIMEOUT, f"no output for {self._idle:g}s mid-answer"
            ) from None
        except ProviderError as err:
            self._failed(err.failure)
            raise

    def _failed(self, failure: Failure) -> None:
        model = _model_label(self.route.endpoint, self.route.model)
        _PROVIDER_ERRORS.labels(self.route.provider, model, failure.value).inc()

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
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(self._attempt_deadline(deadline)):
                answer = await once(lease.client, route)
        except TimeoutError:
            _measured(route, started, Failure.TIMEOUT)
            raise ProviderError(Failure.TIMEOUT, "no answer in time") from None
        except ProviderError as err:
            _measured(route, started, err.failure)
            raise
        finally:
            self._clients.release(lease)
        _measured(route, started, None)
        return answer

    async def _open_once(
        self,
        route: Route,
        deadline: float,
        open_events: Callable[[C, Route], AsyncGenerator[E, None]],
    ) -> OpenStream[C, E]:
        lease = self._clients.acquire(route.endpoint)
        events = open_events(lease.client, route)
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(self._attempt_deadline(deadline)):
                first = await anext(events)
        except BaseException as err:
            try:
                await events.aclose()
            finally:
                self._clients.release(lease)
            if isinstance(err, TimeoutError):
                _measured(route, started, Failure.TIMEOUT)
                raise ProviderError(Failure.TIMEOUT, "no output in time") from None
            if isinstance(err, StopAsyncIteration):
                _measured(route, started, Failure.ERROR)
                raise ProviderError(Failure.ERROR, "the stream ended without an answer") from None
            if isinstance(err, ProviderError):
                _measured(route, started, err.failure)
            raise
        _measured(route, started, None)
        return OpenStream(route, first, events, lease, self._clients, self._policy.idle_timeout_s)
