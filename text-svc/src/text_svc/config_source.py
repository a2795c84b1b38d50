"""Where a caller's text config comes from: the seam between text-svc and settings-svc.

`ConfigSource.resolve(caller)` is the only question text-svc asks. Two answers:
- OperatorDefaults: settings-svc is not configured (TEXT_SVC_SETTINGS_TARGET empty); every caller
  gets the operator's provider/model in member mode, paid with the platform key.
- SettingsServiceConfigs: settings-svc `ResolveConfig`, cached per user for config_cache_ttl_s and
  dropped at once when settings-svc publishes "<user_id>:text" or "<user_id>:*" on the Redis
  channel TEXT_SVC_SETTINGS_CHANGED_CHANNEL (see `watch_settings_changes`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from svc_common import grpc_client
from svc_common.auth import Caller, forward_metadata
from svc_common.errors import from_rpc_error, reraise
from text_svc.config import Settings

log = logging.getLogger(__name__)

BACKEND_TYPE = "text"
_API_STYLES = {"openai": "openai", "anthropic": "anthropic", "ollama": "ollama"}


def api_style_for(provider: str) -> str:
    """The wire protocol of a provider named without one: anything unknown speaks OpenAI's."""
    return _API_STYLES.get(provider, "openai_compatible")


@dataclass(frozen=True, slots=True)
class TextConfig:
    """A caller's resolved text config (settings.v1.ResolvedConfig, minus proto-isms)."""

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
    def from_proto(cls, msg: settings_pb2.ResolvedConfig) -> TextConfig:
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


class ConfigSource(Protocol):
    async def resolve(self, who: Caller, timeout_s: float) -> TextConfig:
        """The caller's text config; raises a ServiceError that says what to change."""
        ...

    def invalidate(self, message: str) -> None:
        """A settings-changed message arrived ("<user_id>:<backend_type>" or "<user_id>:*")."""
        ...

    def clear(self) -> None: ...

    async def aclose(self) -> None: ...


class OperatorDefaults:
    """Every caller gets the operator's default provider and model, in member mode."""

    def __init__(self, settings: Settings) -> None:
        models = tuple(settings.models) or (settings.default_model,)
        self._config = TextConfig(
            provider=settings.default_provider,
            api_style=api_style_for(settings.default_provider),
            model=settings.default_model,
            mode="member",
            models=models,
            platform_key_ref=settings.default_provider,
            # No config fallback: the operator's own (TEXT_SVC_FALLBACK) applies, as the
            # operator's, which may name another provider (plan.fallback_route).
        )

    async def resolve(self, who: Caller, timeout_s: float) -> TextConfig:
        return self._config

    def invalidate(self, message: str) -> None:
        pass

    def clear(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class SettingsServiceConfigs:
    """settings-svc ResolveConfig behind a per-user TTL cache that settings changes invalidate."""

    def __init__(self, settings: Settings, max_entries: int = 50_000) -> None:
        if settings.service_token is None:
            raise RuntimeError("TEXT_SVC_SERVICE_TOKEN is required to call settings-svc")
        self._token = settings.service_token.get_secret_value()
        self._ttl = settings.config_cache_ttl_s
        self._max = max_entries
        self._channel = grpc_client.channel(settings.settings_target)
        self._stub = settings_pb2_grpc.SettingsServiceStub(self._channel)
        # (user id, is member) -> (expires at, config). Membership is part of the key because
        # settings-svc may answer differently for a member and a non-member.
        self._cache: OrderedDict[tuple[str, bool], tuple[float, TextConfig]] = OrderedDict()
        # Bumped by every invalidation: a lookup that began before one is not cached.
        self._epoch = 0

    async def resolve(self, who: Caller, timeout_s: float) -> TextConfig:
        key = (who.user_id, who.is_member)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        epoch = self._epoch
        try:
            resolved = await self._stub.ResolveConfig(
                settings_pb2.ResolveConfigRequest(backend_type=common_pb2.BACKEND_TYPE_TEXT),
                metadata=forward_metadata(self._token, who),
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as err:
            raise reraise(from_rpc_error(err)) from None
        config = TextConfig.from_proto(resolved)
        if epoch == self._epoch and self._ttl > 0:
            self._cache[key] = (time.monotonic() + self._ttl, config)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return config

    def invalidate(self, message: str) -> None:
        user_id, _, backend_type = message.rpartition(":")
        if not user_id or backend_type not in (BACKEND_TYPE, "*"):
            return
        self._epoch += 1
        self._cache.pop((user_id, True), None)
        self._cache.pop((user_id, False), None)

    def clear(self) -> None:
        self._epoch += 1
        self._cache.clear()

    async def aclose(self) -> None:
        await self._channel.close()


def config_source(settings: Settings) -> ConfigSource:
    if settings.settings_target:
        return SettingsServiceConfigs(settings)
    return OperatorDefaults(settings)


async def watch_settings_changes(redis: Any, channel: str, source: ConfigSource) -> None:
    """Drop cached configs as settings-svc announces changes; runs until cancelled.

    After every (re)subscription the whole cache is dropped: messages may have been missed while
    not subscribed, and a stale config (another key, another mode) must not outlive that.
    """
    delay = 0.1
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                kind = message.get("type")
                if kind == "subscribe":
                    source.clear()
                    delay = 0.1
                elif kind == "message":
                    data = message.get("data")
                    source.invalidate(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning(
                "settings-change subscription lost (%s); resubscribing in %.1fs",
                type(err).__name__,
                delay,
            )
        finally:
            await pubsub.aclose()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
