"""A model service's question to settings-svc: the caller's config for its backend type.

`ConfigResolver` calls `ResolveConfig` and keeps the answer per (user, membership) for a TTL in
a `cachetools.TTLCache` (least recently used evicted first); a settings-changed message for the
user and this backend type drops it at once, a resubscription drops everything
(`svc_common.settings_changes.watch` drives `invalidate` and `clear`). Hits and misses are
counted per backend type (`settings_config_cache_lookups_total`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

import grpc
from cachetools import TTLCache

from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from svc_common import grpc_client, metrics, settings_changes
from svc_common.auth import Caller, forward_metadata
from svc_common.errors import from_rpc_error, reraise
from svc_common.names import BACKEND_TYPE_ENUMS

__all__ = ["ConfigResolver"]

Config = TypeVar("Config")

# Membership is part of the key: settings-svc may answer differently for a member and not.
_Key = tuple[str, bool]


class ConfigResolver(Generic[Config]):
    """settings-svc ResolveConfig for one backend type, each answer turned into the service's own
    config type by `convert` and cached (ttl_s 0: never cached)."""

    def __init__(
        self,
        target: str,
        service_token: str,
        backend_type: str,
        convert: Callable[[settings_pb2.ResolvedConfig], Config],
        *,
        ttl_s: float,
        max_entries: int = 50_000,
    ) -> None:
        self._token = service_token
        self._backend_type = backend_type
        self._request = settings_pb2.ResolveConfigRequest(
            backend_type=BACKEND_TYPE_ENUMS[backend_type]
        )
        self._convert = convert
        self._caching = ttl_s > 0
        self._cache: TTLCache[_Key, Config] = TTLCache(
            maxsize=max_entries, ttl=ttl_s if self._caching else 1.0, timer=time.monotonic
        )
        self._channel = grpc_client.channel(target)
        self._stub = settings_pb2_grpc.SettingsServiceStub(self._channel)
        # Bumped by every invalidation: a lookup that began before one is not cached.
        self._epoch = 0
        self._hits = metrics.SETTINGS_CACHE_LOOKUPS.labels(backend_type, "hit")
        self._misses = metrics.SETTINGS_CACHE_LOOKUPS.labels(backend_type, "miss")

    async def resolve(self, who: Caller, timeout_s: float) -> Config:
        """The caller's config; raises the ServiceError settings-svc sent (what to change)."""
        key = (who.user_id, who.is_member)
        hit = self._cache.get(key)
        if hit is not None:
            self._hits.inc()
            return hit
        self._misses.inc()
        epoch = self._epoch
        try:
            resolved = await self._stub.ResolveConfig(
                self._request, metadata=forward_metadata(self._token, who), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as err:
            raise reraise(from_rpc_error(err)) from None
        config = self._convert(resolved)
        if epoch == self._epoch and self._caching:
            self._cache[key] = config
        return config

    def invalidate(self, message: str) -> None:
        """A settings-changed message: drop the user's entries if it is about this backend type."""
        change = settings_changes.decode(message)
        if change is None or change.backend_type != self._backend_type:
            return
        self._epoch += 1
        self._cache.pop((change.user_id, True), None)
        self._cache.pop((change.user_id, False), None)

    def clear(self) -> None:
        self._epoch += 1
        self._cache.clear()

    async def aclose(self) -> None:
        await self._channel.close()
