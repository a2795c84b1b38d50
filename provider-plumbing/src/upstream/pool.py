"""The pool of provider clients, one per (api style, base URL, key, whose base URL), each on its
endpoint's one ProviderTransport.

Building a client per request would cost a connection pool per request; instead clients live in
an LRU keyed by a hash of the key (the key itself is never a dict key or a log field). A client
pushed out of the LRU while requests still use it is closed when the last one is done. What a
client is (a chat client, an image client) is the service's: the pool takes a factory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver

from upstream.transport import ProviderTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to call a provider: the identity of one reusable client."""

    provider: str
    api_style: str  # the wire protocol, e.g. openai | anthropic | openai_compatible | ollama
    base_url: str
    api_key: str = field(repr=False)
    # The base URL came from the user's config (not the operator's environment): every address
    # it connects to must be public unless the operator allow-listed its host.
    user_base_url: bool = False


ClientKey = tuple[str, str, str, bool]


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def client_key(endpoint: Endpoint) -> ClientKey:
    # Whose base URL is part of the identity: a user's is address-checked, the operator's not.
    return (
        endpoint.api_style,
        endpoint.base_url,
        key_hash(endpoint.api_key),
        endpoint.user_base_url,
    )


# How a client gets its endpoint's one transport: called once, with the provider's auth headers.
Connect = Callable[[Mapping[str, str]], ProviderTransport]


class Client(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Client)


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """How every transport in a pool connects (a service fills it from its own settings)."""

    connect_timeout_s: float
    # A backstop only: the attempt policy enforces time-to-first-output and idle timeouts.
    read_timeout_s: float
    # Hosts a user's base URL may name although they resolve to non-public addresses.
    allowed_hosts: Collection[str] = ()
    connections_per_endpoint: int = 512


@dataclass(slots=True, eq=False)
class Lease(Generic[C]):
    client: C
    users: int = 0
    retired: bool = False


class ClientPool(Generic[C]):
    """`build(endpoint, connect)` makes the client for an endpoint; `connect` gives it the
    endpoint's transport (address-checked when the base URL is the user's)."""

    def __init__(
        self,
        build: Callable[[Endpoint, Connect], C],
        options: TransportOptions,
        max_clients: int = 256,
        *,
        resolver: Callable[[], AbstractResolver] | None = None,
    ) -> None:
        self._build_client = build
        self._options = options
        self._max = max_clients
        # A seam for tests (a resolver that answers what DNS would); None: the system resolver.
        self._resolver = resolver
        self._leases: OrderedDict[ClientKey, Lease[C]] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def acquire(self, endpoint: Endpoint) -> Lease[C]:
        """The client for this endpoint, held until `release`. Must run inside the event loop."""
        key = client_key(endpoint)
        lease = self._leases.get(key)
        if lease is None:
            lease = Lease(self._build(endpoint))
            self._leases[key] = lease
            while len(self._leases) > self._max:
                _, old = self._leases.popitem(last=False)
                old.retired = True
                if old.users == 0:
                    self._close(old)
        else:
            self._leases.move_to_end(key)
        lease.users += 1
        return lease

    def release(self, lease: Lease[C]) -> None:
        lease.users -= 1
        if lease.retired and lease.users == 0:
            self._close(lease)

    def _build(self, endpoint: Endpoint) -> C:
        o = self._options
        timeout = aiohttp.ClientTimeout(
            connect=o.connect_timeout_s,
            sock_connect=o.connect_timeout_s,
            sock_read=o.read_timeout_s,
        )

        def connect(headers: Mapping[str, str]) -> ProviderTransport:
            return ProviderTransport(
                endpoint.base_url,
                headers,
                timeout,
                check_addresses=endpoint.user_base_url,
                allowed_hosts=o.allowed_hosts,
                resolver=self._resolver() if self._resolver else None,
                limit=o.connections_per_endpoint,
            )

        return self._build_client(endpoint, connect)

    def _close(self, lease: Lease[C]) -> None:
        task = asyncio.get_running_loop().create_task(lease.client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close every client (shutdown)."""
        leases = list(self._leases.values())
        self._leases.clear()
        results = await asyncio.gather(
            *(lease.client.aclose() for lease in leases), *self._closing, return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("closing a provider client failed: %s", type(result).__name__)
