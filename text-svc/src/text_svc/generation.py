"""Running a Plan against providers with the shared attempt policy (`upstream.Attempts`: time
to first output, idle timeout, retries before any output honouring retry-after, one fallback
route), and what the caller is told about an upstream failure (svc_common errors whose messages
never carry a key)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TypeAlias

from chat_codecs import ChatClient, ChatRequest, Completion, StreamEvent
from svc_common.errors import ServiceError
from text_svc.config_source import BACKEND_TYPE
from text_svc.environment import Settings
from text_svc.plan import Plan
from text_svc.providers import ProviderClients
from upstream import AttemptPolicy, Attempts, OpenStream, ProviderError, Route, RouteFailed
from upstream import service_error as caller_error

log = logging.getLogger(__name__)

# A stream whose first event has arrived; iterating enforces the idle timeout.
UpstreamStream: TypeAlias = OpenStream[ChatClient, StreamEvent]


class Upstream:
    def __init__(self, settings: Settings, clients: ProviderClients) -> None:
        policy = AttemptPolicy(
            first_output_timeout_s=settings.upstream_timeout_s,
            idle_timeout_s=settings.upstream_idle_timeout_s,
            max_retries=settings.max_retries,
            max_retry_wait_s=settings.max_retry_wait_s,
        )
        self._attempts = Attempts(clients, policy)

    # `deadline` is on the event loop's clock (loop.time()): the caller's own deadline, which
    # bounds every attempt and retry; each attempt also has upstream_timeout_s to first output.

    async def complete(self, plan: Plan, deadline: float) -> tuple[Route, Completion]:
        """The whole answer from the first route that gives one; raises ServiceError."""
        try:
            return await self._attempts.call(
                plan.routes,
                deadline,
                lambda client, route: client.complete(_request_for(plan, route)),
                log_extra=_log_extra(plan),
            )
        except RouteFailed as err:
            raise service_error(err.error, err.route, plan.mode) from None

    async def open_stream(self, plan: Plan, deadline: float) -> UpstreamStream:
        """A stream whose first event has arrived (so retries and fallback are over)."""
        try:
            return await self._attempts.open_stream(
                plan.routes,
                deadline,
                lambda client, route: client.stream(_request_for(plan, route)),
                log_extra=_log_extra(plan),
            )
        except RouteFailed as err:
            raise service_error(err.error, err.route, plan.mode) from None


def _request_for(plan: Plan, route: Route) -> ChatRequest:
    # A fallback route changes only the model.
    return plan.call if route is plan.routes[0] else replace(plan.call, model=route.model)


def _log_extra(plan: Plan) -> dict[str, str]:
    return {"request_id": plan.correlation_id, "event_id": plan.request_id}


def service_error(err: ProviderError, route: Route, mode: str) -> ServiceError:
    """What the caller is told about an upstream failure (upstream's mapping, for text)."""
    return caller_error(err, route, mode, BACKEND_TYPE)
