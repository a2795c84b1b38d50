"""Provider presets: what each backend type offers, held in memory and re-read periodically.

Presets change only by migration or operator SQL, so every replica keeps them in memory (the hot
path, ResolveConfig, then needs one query for the user's config and key). `PresetCatalog.reload()`
re-reads them; the server calls it every `presets_reload_seconds` and on SIGHUP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from grpc_stubs.settings.v1 import settings_pb2
from svc_common.names import BACKEND_TYPE_ENUMS, BACKEND_TYPES

log = logging.getLogger(__name__)

# Servers a user runs themselves: any model name is accepted and a key is optional.
LOCAL_API_STYLES = frozenset({"ollama", "openai_compatible", "automatic1111", "comfyui"})


@dataclass(frozen=True, slots=True)
class Preset:
    provider: str
    backend_type: str
    display_name: str
    api_style: str
    models: tuple[str, ...]
    default_model: str
    temperature_min: float | None
    temperature_max: float | None
    temperature_default: float | None
    member_allowed: bool
    user_base_url_allowed: bool
    default_base_url: str
    sort_order: int

    @property
    def is_local(self) -> bool:
        return self.api_style in LOCAL_API_STYLES

    @property
    def any_model(self) -> bool:
        """Local and user-hosted servers serve whatever they have; `models` are suggestions."""
        return self.is_local or self.user_base_url_allowed

    @property
    def has_temperature(self) -> bool:
        return self.temperature_min is not None and self.temperature_max is not None

    def to_proto(self) -> settings_pb2.Preset:
        return settings_pb2.Preset(
            provider=self.provider,
            backend_type=BACKEND_TYPE_ENUMS[self.backend_type],
            display_name=self.display_name,
            api_style=self.api_style,
            models=self.models,
            default_model=self.default_model,
            temperature_min=self.temperature_min or 0.0,
            temperature_max=self.temperature_max or 0.0,
            default_temperature=self.temperature_default or 0.0,
            member_allowed=self.member_allowed,
            user_base_url_allowed=self.user_base_url_allowed,
            default_base_url=self.default_base_url,
        )


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


_SELECT = """
SELECT provider, backend_type, display_name, api_style, models, default_model,
       temperature_min, temperature_max, temperature_default,
       member_allowed, user_base_url_allowed, default_base_url, sort_order
FROM settings.provider_presets
ORDER BY backend_type, sort_order, provider
"""


class PresetCatalog:
    """An in-memory, immutable snapshot of the presets, swapped whole on reload."""

    def __init__(self, presets: list[Preset] | None = None) -> None:
        self._set(presets or [])

    def _set(self, presets: list[Preset]) -> None:
        ordered = sorted(
            presets, key=lambda p: (BACKEND_TYPES.index(p.backend_type), p.sort_order, p.provider)
        )
        self._all = tuple(ordered)
        self._by_key = {(p.backend_type, p.provider): p for p in ordered}
        self._defaults: dict[str, Preset] = {}
        for preset in ordered:
            self._defaults.setdefault(preset.backend_type, preset)

    async def reload(self, pool: asyncpg.Pool) -> None:
        rows = await pool.fetch(_SELECT)
        self._set(
            [
                Preset(
                    provider=r["provider"],
                    backend_type=r["backend_type"],
                    display_name=r["display_name"],
                    api_style=r["api_style"],
                    models=tuple(r["models"]),
                    default_model=r["default_model"],
                    temperature_min=_float(r["temperature_min"]),
                    temperature_max=_float(r["temperature_max"]),
                    temperature_default=_float(r["temperature_default"]),
                    member_allowed=r["member_allowed"],
                    user_base_url_allowed=r["user_base_url_allowed"],
                    default_base_url=r["default_base_url"],
                    sort_order=r["sort_order"],
                )
                for r in rows
            ]
        )
        log.debug("loaded %d provider presets", len(rows))

    def all(self, backend_type: str | None = None) -> tuple[Preset, ...]:
        if backend_type is None:
            return self._all
        return tuple(p for p in self._all if p.backend_type == backend_type)

    def get(self, backend_type: str, provider: str) -> Preset | None:
        return self._by_key.get((backend_type, provider))

    def default(self, backend_type: str) -> Preset | None:
        """The preset an unsaved config uses: the first of its backend type."""
        return self._defaults.get(backend_type)

    def providers(self, backend_type: str) -> list[str]:
        return [p.provider for p in self._all if p.backend_type == backend_type]
