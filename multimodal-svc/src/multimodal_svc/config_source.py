"""Where a caller's multimodal config comes from: settings-svc `ResolveConfig` for backend type
multimodal (`svc_common.config_resolution`, cached, dropped on settings-changed messages), or,
without MULTIMODAL_SVC_SETTINGS_TARGET, the operator's default provider and model in member mode."""

from __future__ import annotations

from multimodal_svc.environment import Settings
from svc_common import config_resolution
from svc_common.config_resolution import ChatConfig

BACKEND_TYPE = "multimodal"

# A caller's resolved multimodal config (multimodal-svc has no fallback route).
VisionConfig = ChatConfig
ConfigSource = config_resolution.ConfigSource[VisionConfig]


def config_source(settings: Settings) -> ConfigSource:
    default = VisionConfig.operator_default(settings, settings.default_model, settings.models)
    return config_resolution.config_source(
        settings, BACKEND_TYPE, VisionConfig.from_proto, lambda who: default
    )
