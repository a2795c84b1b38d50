"""Running a Plan against providers, the same way for every provider:

- a time limit to the first output (upstream_timeout_s) and between streamed chunks (idle);
- retries of 429/5xx/529/connection failures only while nothing has been received, honouring
  retry-after up to max_retry_wait_s (a longer hint is returned to the caller instead);
- one fallback route when the primary is down (UNAVAILABLE/ERROR) before any output;
- upstream failures mapped to svc_common errors whose messages never carry a key.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from svc_common.errors import (
    PROVIDER_AUTH_FAILED,
    UPSTREAM_ERROR,
    UPSTREAM_RATE_LIMITED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNAVAILABLE,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from text_svc.config import Settings
from text_svc.plan import Plan, Route
from text_svc.providers import Lease, ProviderClients
from text_svc.providers.base import ChatCall, Completion, Delta, Failure, Finish, ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")
# Failures worth trying the fallback route for: the primary is down, not the request wrong.
FALLBACK_ON = frozenset({Failure.UNAVAILABLE, Failure.ERROR})


class UpstreamStream:
    """An upstream stream whose first event has arrived. Iterating enforces the idle timeout;
    `aclose` closes the upstream HTTP stream (idempotent)."""

    def __init__(
        self,
        route: Route,
        first: Delta | Finish,
        events: AsyncGenerator[Delta | Finish, None],
        lease: Lease,
        clients: ProviderClients,
        idle_timeout: float,
    ) -> None:
        self.route = route
        self._first: Delta | Finish | None = first
        self._events = events
        self._lease = lease
        self._clients = clients
        self._idle = idle_timeout
        self._closed = False

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> Delta | Finish:
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


class Upstream:
    def __init__(self, settings: Settings, clients: ProviderClients) -> None:
        self._settings = settings
        self._clients = clients

    # `deadline` is on the event loop's clock (loop.time()): the caller's own deadline, which
    # bounds every attempt and retry; each attempt also has upstream_timeout_s to first output.

    async def complete(self, plan: Plan, deadline: float) -> tuple[Route, Completion]:
        """The whole answer from the first route that gives one; raises ServiceError."""

        def attempt(route: Route, call: ChatCall) -> Callable[[], Awaitable[Completion]]:
            return lambda: self._complete_once(route, call, deadline)

        return await self._routes(plan, deadline, attempt)

    async def open_stream(self, plan: Plan, deadline: float) -> UpstreamStream:
        """A stream whose first event has arrived (so retries and fallback are over)."""

        def attempt(route: Route, call: ChatCall) -> Callable[[], Awaitable[UpstreamStream]]:
            return lambda: self._open_once(route, call, deadline)

        _, stream = await self._routes(plan, deadline, attempt)
        return stream

    async def _routes(
        self,
        plan: Plan,
        deadline: float,
        attempt: Callable[[Route, ChatCall], Callable[[], Awaitable[T]]],
    ) -> tuple[Route, T]:
        for i, route in enumerate(plan.routes):
            call = plan.call if i == 0 else replace(plan.call, model=route.model)
            try:
                return route, await self._retrying(route, deadline, attempt(route, call))
            except ProviderError as err:
                if i + 1 < len(plan.routes) and err.failure in FALLBACK_ON:
                    nxt = plan.routes[i + 1]
                    log.warning(
                        "%s %s failed before any output (%s); falling back to %s %s",
                        route.provider,
                        route.model,
                        err.detail,
                        nxt.provider,
                        nxt.model,
                        extra={"request_id": plan.correlation_id, "event_id": plan.request_id},
                    )
                    continue
                raise service_error(err, route, plan.mode) from None
        raise AssertionError("a plan has at least one route")

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
        s = self._settings
        if not err.retryable or tries >= s.max_retries:
            return None
        if err.retry_after is not None:
            if err.retry_after > s.max_retry_wait_s:
                return None  # the caller gets the 429/503 with the hint
            wait = err.retry_after
        else:
            wait = min(0.25 * 2**tries, 4.0) * (0.5 + random.random() / 2)
        return wait if asyncio.get_running_loop().time() + wait < deadline else None

    def _attempt_deadline(self, deadline: float) -> float:
        return min(asyncio.get_running_loop().time() + self._settings.upstream_timeout_s, deadline)

    async def _complete_once(self, route: Route, call: ChatCall, deadline: float) -> Completion:
        lease = self._clients.acquire(route.endpoint)
        try:
            async with asyncio.timeout_at(self._attempt_deadline(deadline)):
                return await lease.adapter.complete(call)
        except TimeoutError:
            raise ProviderError(Failure.TIMEOUT, "no answer in time") from None
        finally:
            self._clients.release(lease)

    async def _open_once(self, route: Route, call: ChatCall, deadline: float) -> UpstreamStream:
        lease = self._clients.acquire(route.endpoint)
        events = lease.adapter.stream(call)
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
        return UpstreamStream(
            route, first, events, lease, self._clients, self._settings.upstream_idle_timeout_s
        )


def service_error(err: ProviderError, route: Route, mode: str) -> ServiceError:
    """What the caller is told about an upstream failure. Never the key, never a 401 body."""
    provider = route.provider
    f = err.failure
    if f is Failure.AUTH:
        if mode == "byok":
            hint = f"check the {provider} API key saved in your text settings"
        else:
            hint = f"the operator must check the platform's {provider} API key"
        return FailedPrecondition(
            f"{provider} rejected the API key (HTTP {err.status}): {hint}",
            reason=PROVIDER_AUTH_FAILED,
        )
    if f is Failure.RATE_LIMITED:
        when = f"; retry after {err.retry_after:g}s" if err.retry_after is not None else ""
        return ResourceExhausted(
            f"{provider} is rate limiting requests{when}",
            reason=UPSTREAM_RATE_LIMITED,
            retry_after=err.retry_after,
        )
    if f is Failure.UNAVAILABLE:
        return Unavailable(
            f"{provider} is unavailable ({err.detail}); try again later",
            reason=UPSTREAM_UNAVAILABLE,
            retry_after=err.retry_after,
        )
    if f is Failure.ERROR:
        return Unavailable(f"{provider} failed ({err.detail})", reason=UPSTREAM_ERROR)
    if f is Failure.TIMEOUT:
        return DeadlineExceeded(f"{provider} timed out: {err.detail}", reason=UPSTREAM_TIMEOUT)
    if f is Failure.BLOCKED:  # a redirect, or an address not allowed: the base URL must change
        return FailedPrecondition(
            f"the {provider} base URL cannot be used: {err.detail}",
            reason=UPSTREAM_ERROR,
            param=err.param,
        )
    return InvalidArgument(
        f"{provider} rejected the request for model {route.model!r}: {err.detail}",
        param=err.param,
    )
