"""The attempt policy and the client pool, over clients that fail on cue: retries only before
any output and honouring retry-after, the fallback route, time to first output, idle timeouts,
and leases that always go back to the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

import pytest

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
PRIMARY = Route(Endpoint("openai", "openai", "http://primary.invalid/v1", "sk-1"), "m1")
FALLBACK = Route(Endpoint("anthropic", "anthropic", "http://fallback.invalid", "sk-2"), "m2")
FAST = AttemptPolicy(first_output_timeout_s=5, idle_timeout_s=5, max_retries=2, max_retry_wait_s=1)


class Scripted:
    """A client whose answers per model are scripted: a ProviderError to raise, or a value."""

    def __init__(self, endpoint: Endpoint, connect: Connect, script: dict[str, list[object]]):
        self.endpoint = endpoint
        self.script = script
        self.closed = False
        self.transport = connect({"authorization": "Bearer x"})

    async def answer(self, route: Route) -> object:
        outcome = self.script[route.model].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.Event().wait()
        return outcome

    async def events(self, route: Route) -> AsyncGenerator[object, None]:
        first = await self.answer(route)
        yield first
        yield "second"
        await asyncio.Event().wait()  # then silence

    async def aclose(self) -> None:
        self.closed = True
        await self.transport.aclose()


def pool(script: dict[str, list[object]], max_clients: int = 8) -> ClientPool[Scripted]:
    options = TransportOptions(connect_timeout_s=1, read_timeout_s=1)
    return ClientPool(
        lambda endpoint, connect: Scripted(endpoint, connect, script), options, max_clients
    )


def users(clients: ClientPool[Scripted], endpoint: Endpoint) -> int:
    lease = clients.acquire(endpoint)
    clients.release(lease)
    return lease.users


async def test_retries_before_output_honour_retry_after_then_answer() -> None:
    limited = ProviderError(Failure.RATE_LIMITED, "HTTP 429", status=429, retry_after=0.01)
    clients = pool({"m1": [limited, limited, "ok"]})
    route, answer = await Attempts(clients, FAST).call(
        [PRIMARY], asyncio.get_running_loop().time() + 5, lambda c, r: c.answer(r)
    )
    assert (route, answer) == (PRIMARY, "ok")
    assert users(clients, PRIMARY.endpoint) == 0
    await clients.aclose()


async def test_a_retry_after_beyond_the_wait_limit_goes_back_to_the_caller() -> None:
    limited = ProviderError(Failure.RATE_LIMITED, "HTTP 429", status=429, retry_after=30)
    clients = pool({"m1": [limited, "never reached"]})
    with pytest.raises(RouteFailed) as caught:
        await Attempts(clients, FAST).call([PRIMARY], 1e12, lambda c, r: c.answer(r))
    assert (caught.value.route, caught.value.error.retry_after) == (PRIMARY, 30)
    await clients.aclose()


async def test_an_unavailable_primary_falls_back_a_bad_request_does_not() -> None:
    down = ProviderError(Failure.UNAVAILABLE, "HTTP 503", status=503)
    clients = pool({"m1": [down, down, down], "m2": ["from fallback"]})
    attempts = Attempts(clients, AttemptPolicy(5, 5, max_retries=2, max_retry_wait_s=0))
    assert await attempts.call([PRIMARY, FALLBACK], 1e12, lambda c, r: c.answer(r)) == (
        FALLBACK,
        "from fallback",
    )
    await clients.aclose()
    wrong = ProviderError(Failure.BAD_REQUEST, "no such model", status=404)
    clients = pool({"m1": [wrong], "m2": ["never reached"]})
    with pytest.raises(RouteFailed) as caught:
        await Attempts(clients, FAST).call([PRIMARY, FALLBACK], 1e12, lambda c, r: c.answer(r))
    assert (caught.value.route, caught.value.error.failure) == (PRIMARY, Failure.BAD_REQUEST)
    await clients.aclose()


async def test_time_to_first_output_and_idle_timeouts() -> None:
    slow = AttemptPolicy(
        first_output_timeout_s=0.05, idle_timeout_s=0.05, max_retries=0, max_retry_wait_s=0
    )
    clients = pool({"m1": ["hang", "first"]})
    attempts = Attempts(clients, slow)
    with pytest.raises(RouteFailed) as caught:
        await attempts.open_stream([PRIMARY], 1e12, lambda c, r: c.events(r))
    assert caught.value.error.detail == "no output in time"
    stream = await attempts.open_stream([PRIMARY], 1e12, lambda c, r: c.events(r))
    assert [await anext(stream), await anext(stream)] == ["first", "second"]
    assert users(clients, PRIMARY.endpoint) == 1  # the stream holds its client
    with pytest.raises(ProviderError, match=r"no output for 0\.05s mid-answer"):
        await anext(stream)
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert users(clients, PRIMARY.endpoint) == 0
    await clients.aclose()


async def test_the_pool_keeps_one_client_per_endpoint_and_key_and_closes_evicted_ones() -> None:
    clients = pool({}, max_clients=1)
    first = clients.acquire(PRIMARY.endpoint)
    assert clients.acquire(PRIMARY.endpoint).client is first.client  # same endpoint and key
    other_key = Endpoint("openai", "openai", PRIMARY.endpoint.base_url, "sk-other")
    second = clients.acquire(other_key)
    assert second.client is not first.client
    assert not first.client.closed  # evicted but still in use
    clients.release(first)
    clients.release(first)
    await asyncio.gather(*clients._closing)
    assert first.client.closed
    clients.release(second)
    await clients.aclose()
    assert second.client.closed
    assert "sk-1" not in repr(PRIMARY.endpoint)


def test_headers_reach_the_transport() -> None:
    async def build() -> Mapping[str, str]:
        clients = pool({})
        lease = clients.acquire(PRIMARY.endpoint)
        headers = dict(lease.client.transport.session.headers)
        clients.release(lease)
        await clients.aclose()
        return headers

    assert asyncio.run(build())["authorization"] == "Bearer x"
