"""Where a caller's text config comes from: the seam between text-svc and settings-svc.

`ConfigSource.resolve(caller)` is the only question text-svc asks. Two answers:
- OperatorDefaults: settings-svc is not configured (TEXT_SVC_SETTINGS_TARGET empty); every caller
  gets the operator's provider/model in member mode, paid with the platform key.
- settings-svc `ResolveConfig` for backend type text (`svc_common.config_resolution`), cached per
  user for config_cache_ttl_s and dropped at once when settings-svc announces a change of the
  user's text config on TEXT_SVC_SETTINGS_CHANGED_CHANNEL (`svc_common.settings_changes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2
from svc_common.auth import Caller
from svc_common.config_resolution import ConfigResolver
from svc_common.settings_changes import watch as watch_settings_changes
from text_svc.config import Settings

__all__ = [
    "BACKEND_TYPE",
    "ConfigSource",
    "OperatorDefaults",
    "TextConfig",
    "api_style_for",
    "config_source",
    "watch_settings_changes",
]

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
        """A settings-changed message arrived (`svc_common.settings_changes`)."""
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


def config_source(settings: Settings) -> ConfigSource:
    if not settings.settings_target:
        return OperatorDefaults(settings)
    if settings.service_token is None:
        raise RuntimeError("TEXT_SVC_SERVICE_TOKEN is required to call settings-svc")
    return ConfigResolver(
        settings.settings_target,
        settings.service_token.get_secret_value(),
        BACKEND_TYPE,
        TextConfig.from_proto,
        ttl_s=settings.config_cache_ttl_s,
    )
