"""Provider latency and errors per provider and model (upstream.attempts into svc_common's
registry): attempts by outcome, failures by kind, never a key or a user's free-text model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from svc_common.metrics import REGISTRY
from upstream import (
    AttemptPolicy,
    Attempts,
    ClientPool,
    Connect,
    Endpoint,
    Failure,
    ProviderError,
    Route,
    RouteFailed,
    TransportOptions,
)

pytestmark = pytest.mark.timeout(10)
KEY = "sk-planted-provider-key-51c0"
OPERATOR = Route(Endpoint("openai", "openai", "http://metrics.invalid/v1", KEY), "gpt-metrics")
# A user's own base URL: its model name is free text the user typed.
USERS_OWN = Route(
    Endpoint("ollama", "ollama", "http://user.invalid", KEY, user_base_url=True),
    "my-secret-project-model",
)


FAST = AttemptPolicy(first_output_timeout_s=5, idle_timeout_s=5, max_retries=2, max_retry_wait_s=1)


class Scripted:
    """A client that answers per model from a script: a ProviderError to raise, or a value."""

    def __init__(self, endpoint: Endpoint, connect: Connect, script: dict[str, list[object]]):
        self.script = script

    async def answer(self, route: Route) -> object:
        outcome = self.script[route.model].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def events(self, route: Route) -> AsyncGenerator[object, None]:
        yield await self.answer(route)

    async def aclose(self) -> None:
        pass


def pool(script: dict[str, list[object]]) -> ClientPool[Scripted]:
    options = TransportOptions(connect_timeout_s=1, read_timeout_s=1)
    return ClientPool(lambda endpoint, connect: Scripted(endpoint, connect, script), options, 8)


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(REGISTRY).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_attempts_and_failures_are_counted_per_provider_and_model() -> None:
    before = samples()
    limited = ProviderError(Failure.RATE_LIMITED, "HTTP 429", status=429, retry_after=0.01)
    clients = pool({"gpt-metrics": [limited, "ok"], "my-secret-project-model": ["ok"]})
    attempts = Attempts(clients, FAST)
    deadline = asyncio.get_running_loop().time() + 5
    await attempts.call([OPERATOR], deadline, lambda c, r: c.answer(r))
    await attempts.call([USERS_OWN], deadline, lambda c, r: c.answer(r))
    auth = ProviderError(Failure.AUTH, "HTTP 401", status=401)
    clients2 = pool({"gpt-metrics": [auth]})
    with pytest.raises(RouteFailed):
        await Attempts(clients2, FAST).open_stream([OPERATOR], deadline, lambda c, r: c.events(r))
    after = samples()

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    operator = {"provider": "openai", "model": "gpt-metrics"}
    assert delta("provider_attempt_seconds_count", **operator, outcome="rate_limited") == 1
    assert delta("provider_attempt_seconds_count", **operator, outcome="ok") == 1
    assert delta("provider_attempt_seconds_count", **operator, outcome="auth") == 1
    assert delta("provider_errors_total", **operator, failure="rate_limited") == 1
    assert delta("provider_errors_total", **operator, failure="auth") == 1
    users_own = {"provider": "ollama", "model": "other", "outcome": "ok"}
    assert delta("provider_attempt_seconds_count", **users_own) == 1
    labels = {v for (_, ls) in after for (_, v) in ls}
    assert KEY not in labels and "my-secret-project-model" not in labels
    await clients.aclose()
    await clients2.aclose()
