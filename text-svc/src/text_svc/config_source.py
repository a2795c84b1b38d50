"""Where a caller's text config comes from: the seam between text-svc and settings-svc.

`ConfigSource.resolve(caller)` is the only question text-svc asks (`svc_common.config_resolution`).
Two answers:
- OperatorDefaults: settings-svc is not configured (TEXT_SVC_SETTINGS_TARGET empty); every caller
  gets the operator's provider/model in member mode, paid with the platform key.
- settings-svc `ResolveConfig` for backend type text, cached per user for config_cache_ttl_s and
  dropped at once when settings-svc announces a change of the user's text config on
  TEXT_SVC_SETTINGS_CHANGED_CHANNEL (`svc_common.settings_changes`).
"""

from __future__ import annotations

from svc_common import config_resolution
from svc_common.config_resolution import ChatConfig
from svc_common.settings_changes import watch as watch_settings_changes
from text_svc.environment import Settings

__all__ = ["BACKEND_TYPE", "ConfigSource", "TextConfig", "config_source", "watch_settings_changes"]

BACKEND_TYPE = "text"

# A caller's resolved text config (its fallback is text-svc's alone).
TextConfig = ChatConfig
ConfigSource = config_resolution.ConfigSource[TextConfig]


def config_source(settings: Settings) -> ConfigSource:
    # No config fallback without settings-svc: the operator's own (TEXT_SVC_FALLBACK) applies, as
    # the operator's, which may name another provider (plan.fallback_route).
    default = TextConfig.operator_default(settings, settings.default_model, settings.models)
    return config_resolution.config_source(
        settings, BACKEND_TYPE, TextConfig.from_proto, lambda who: default
    )
