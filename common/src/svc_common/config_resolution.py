"""A model service's question to settings-svc: the caller's config for its backend type.

`ConfigResolver` calls `ResolveConfig` and keeps the answer per (user, membership) for a TTL in
a `cachetools.TTLCache` (least recently used evicted first); a settings-changed message for the
user and this backend type drops it at once, a resubscription drops everything
(`svc_common.settings_changes.watch` drives `invalidate` and `clear`). Hits and misses are
counted per backend type (`settings_config_cache_lookups_total`).

`config_source` is a model service's one question, `ConfigSource.resolve(caller)`: settings-svc
when the service has a settings target, else `OperatorDefaults` (the operator's default provider
and model; the service says what each caller gets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import grpc
from cachetools import TTLCache

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from svc_common import grpc_client, metrics, settings_changes
from svc_common.auth import Caller, forward_metadata
from svc_common.environment import ModelServiceSettings
from svc_common.errors import from_rpc_error, reraise
from svc_common.names import BACKEND_TYPE_ENUMS, api_style_for

__all__ = ["ChatConfig", "ConfigResolver", "ConfigSource", "OperatorDefaults", "config_source"]

Config = TypeVar("Config")
Config_co = TypeVar("Config_co", covariant=True)

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


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """A caller's resolved config for a chat backend type (text, multimodal):
    settings.v1.ResolvedConfig minus proto-isms."""

    provider: str
    api_style: str  # openai | anthropic | openai_compatible | ollama
    model: str
    mode: str  # member | byok
    models: tuple[str, ...] = ()  # the models a request may name; empty: only `model`
    temperature: float | None = None
    temperature_min: float | None = None  # None: the provider's own range
    temperature_max: float | None = None
    base_url: str = ""  # empty: the operator's base URL for the provider
    api_key: str = field(default="", repr=False)  # byok: the user's key
    platform_key_ref: str = ""  # member: whose platform key (a provider name)
    fallback: str = ""  # "provider:model" or "model"
    config_version: int = 0

    @classmethod
    def from_proto(cls, msg: settings_pb2.ResolvedConfig) -> ChatConfig:
        ranged = msg.temperature_max > msg.temperature_min
        return cls(
            provider=msg.provider,
            api_style=msg.api_style or api_style_for(msg.provider),
            model=msg.model,
            mode="byok" if msg.mode == common_pb2.MODE_BYOK else "member",
            models=tuple(msg.models),
            temperature=msg.temperature if msg.HasField("temperature") else None,
            temperature_min=msg.temperature_min if ranged else None,
            temperature_max=msg.temperature_max if ranged else None,
            base_url=msg.base_url,
            api_key=msg.api_key,
            platform_key_ref=msg.platform_key_ref,
            fallback=msg.options.get("fallback", ""),
            config_version=msg.config_version,
        )

    @classmethod
    def operator_default(
        cls, settings: ModelServiceSettings, model: str, models: list[str]
    ) -> ChatConfig:
        """What every caller gets without settings-svc: the operator's default provider and
        model, in member mode on the platform key. No config fallback: the operator's own
        (<PREFIX>FALLBACK, where a service has one) applies as the operator's."""
        return cls(
            provider=settings.default_provider,
            api_style=api_style_for(settings.default_provider),
            model=model,
            mode="member",
            models=tuple(models) or (model,),
            platform_key_ref=settings.default_provider,
        )


class ConfigSource(Protocol[Config_co]):
    """Where a caller's config comes from (settings-svc or the operator's defaults)."""

    async def resolve(self, who: Caller, timeout_s: float) -> Config_co:
        """The caller's config; raises a ServiceError that says what to change."""
        ...

    def invalidate(self, message: str) -> None:
        """A settings-changed message arrived (`svc_common.settings_changes`)."""
        ...

    def clear(self) -> None: ...

    async def aclose(self) -> None: ...


class OperatorDefaults(Generic[Config]):
    """Without settings-svc: every caller gets what `config_for` gives (the operator's default
    provider and model); nothing is cached, so a settings-changed message changes nothing."""

    def __init__(self, config_for: Callable[[Caller], Config]) -> None:
        self._config_for = config_for

    async def resolve(self, who: Caller, timeout_s: float) -> Config:
        return self._config_for(who)

    def invalidate(self, message: str) -> None:
        pass

    def clear(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def config_source(
    settings: ModelServiceSettings,
    backend_type: str,
    convert: Callable[[settings_pb2.ResolvedConfig], Config],
    defaults: Callable[[Caller], Config],
) -> ConfigSource[Config]:
    """settings-svc's answers for `backend_type` (cached for config_cache_ttl_s) when the service
    has a settings target, else the operator's `defaults`."""
    if not settings.settings_target:
        return OperatorDefaults(defaults)
    if settings.service_token is None:
        prefix = settings.model_config.get("env_prefix", "")
        raise RuntimeError(f"{prefix}SERVICE_TOKEN is required to call settings-svc")
    return ConfigResolver(
        settings.settings_target,
        settings.service_token.get_secret_value(),
        backend_type,
        convert,
        ttl_s=settings.config_cache_ttl_s,
    )
