"""Provider adapters (one module per API style), and the pool that reuses one client per
(api style, base URL, key, whose base URL).

Each client owns one upstream.ProviderTransport: one connection pool for its JSON calls and its
streams. Building one per request would cost a pool per request; instead clients live in an LRU
keyed by a hash of the key (the key itself is never a dict key or a log field). A client pushed
out of the LRU while requests still use it is closed when the last one is done.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver

from text_svc.config import Settings
from text_svc.providers.anthropic_adapter import AnthropicAdapter
from text_svc.providers.base import Endpoint, ProviderAdapter
from text_svc.providers.ollama_adapter import OllamaAdapter
from text_svc.providers.openai_adapter import OpenAIAdapter
from upstream import ProviderTransport

log = logging.getLogger(__name__)


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def client_key(endpoint: Endpoint) -> tuple[str, str, str, bool]:
    # Whose base URL is part of the identity: a user's is address-checked, the operator's not.
    return (
        endpoint.api_style,
        endpoint.base_url,
        key_hash(endpoint.api_key),
        endpoint.user_base_url,
    )


@dataclass(slots=True, eq=False)
class Lease:
    adapter: ProviderAdapter
    users: int = 0
    retired: bool = False


class ProviderClients:
    def __init__(
        self,
        settings: Settings,
        max_clients: int = 256,
        *,
        resolver: Callable[[], AbstractResolver] | None = None,
    ) -> None:
        self._settings = settings
        self._max = max_clients
        # A seam for tests (a resolver that answers what DNS would); None: the system resolver.
        self._resolver = resolver
        self._leases: OrderedDict[tuple[str, str, str, bool], Lease] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def acquire(self, endpoint: Endpoint) -> Lease:
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

    def release(self, lease: Lease) -> None:
        lease.users -= 1
        if lease.retired and lease.users == 0:
            self._close(lease)

    def _build(self, endpoint: Endpoint) -> ProviderAdapter:
        s = self._settings
        connect = s.upstream_connect_timeout_s
        # A backstop only: text_svc.generation enforces time-to-first-output and idle timeouts.
        read = max(s.upstream_timeout_s, s.upstream_idle_timeout_s) + 1
        timeout = aiohttp.ClientTimeout(connect=connect, sock_connect=connect, sock_read=read)

        def transport(headers: Mapping[str, str]) -> ProviderTransport:
            return ProviderTransport(
                endpoint.base_url,
                headers,
                timeout,
                check_addresses=endpoint.user_base_url,
                allowed_hosts=s.allowed_base_url_hosts,
                resolver=self._resolver() if self._resolver else None,
            )

        if endpoint.api_style == "anthropic":
            return AnthropicAdapter(endpoint, transport)
        if endpoint.api_style == "ollama":
            return OllamaAdapter(endpoint, transport)
        return OpenAIAdapter(endpoint, transport)

    def _close(self, lease: Lease) -> None:
        task = asyncio.get_running_loop().create_task(lease.adapter.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close every client (shutdown)."""
        leases = list(self._leases.values())
        self._leases.clear()
        results = await asyncio.gather(
            *(lease.adapter.aclose() for lease in leases), *self._closing, return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("closing a provider client failed: %s", type(result).__name__)
