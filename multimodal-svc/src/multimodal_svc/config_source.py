"""Where a caller's multimodal config comes from: settings-svc `ResolveConfig` for backend type
multimodal (`svc_common.config_resolution`, cached, dropped on settings-changed messages), or,
without MULTIMODAL_SVC_SETTINGS_TARGET, the operator's default provider and model in member mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2
from multimodal_svc.config import Settings
from svc_common.auth import Caller
from svc_common.config_resolution import ConfigResolver

BACKEND_TYPE = "multimodal"
_API_STYLES = {"openai": "openai", "anthropic": "anthropic", "ollama": "ollama"}


def api_style_for(provider: str) -> str:
    """The wire protocol of a provider named without one: anything unknown speaks OpenAI's."""
    return _API_STYLES.get(provider, "openai_compatible")


@dataclass(frozen=True, slots=True)
class VisionConfig:
    """A caller's resolved multimodal config."""

    provider: str
    api_style: str  # openai | anthropic | openai_compatible | ollama
    model: str
    mode: str  # member | byok
    models: tuple[str, ...] = ()  # the models a request may name; empty: only `model`
    temperature: float | None = None
    temperature_min: float | None = None
    temperature_max: float | None = None
    base_url: str = ""  # empty: the operator's base URL for the provider
    api_key: str = field(default="", repr=False)  # byok: the user's multimodal key
    platform_key_ref: str = ""

    @classmethod
    def from_proto(cls, msg: settings_pb2.ResolvedConfig) -> VisionConfig:
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
        )


class ConfigSource(Protocol):
    async def resolve(self, who: Caller, timeout_s: float) -> VisionConfig: ...

    def invalidate(self, message: str) -> None: ...

    def clear(self) -> None: ...

    async def aclose(self) -> None: ...


class OperatorDefaults:
    """Every caller gets the operator's default provider and model, in member mode."""

    def __init__(self, settings: Settings) -> None:
        self._config = VisionConfig(
            provider=settings.default_provider,
            api_style=api_style_for(settings.default_provider),
            model=settings.default_model,
            mode="member",
            models=tuple(settings.models) or (settings.default_model,),
            platform_key_ref=settings.default_provider,
        )

    async def resolve(self, who: Caller, timeout_s: float) -> VisionConfig:
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
        raise RuntimeError("MULTIMODAL_SVC_SERVICE_TOKEN is required to call settings-svc")
    return ConfigResolver(
        settings.settings_target,
        settings.service_token.get_secret_value(),
        BACKEND_TYPE,
        VisionConfig.from_proto,
        ttl_s=settings.config_cache_ttl_s,
    )
