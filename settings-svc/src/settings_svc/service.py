"""The SettingsService servicer: per-user configs, write-only BYOK keys, and ResolveConfig.

The user is always the one in the call's metadata (x-user-id, set by the trusted caller); no
request names a user, so one user can never read or change another's rows.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata

import grpc

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from settings_svc.base_urls import BaseUrlRejected, check_base_url
from settings_svc.changes import ChangePublisher
from settings_svc.keystore import (
    InvalidApiKey,
    KeyRing,
    UndecryptableKey,
    associated_data,
    key_hint,
    normalize_api_key,
)
from settings_svc.presets import Preset, PresetCatalog
from settings_svc.store import ConfigNewValues, ConfigStore, KeyInfo, StoredConfig, StoredKey
from svc_common.auth import MODEL_SERVICES, Caller, caller
from svc_common.errors import (
    API_KEY_MISSING,
    API_KEY_UNREADABLE,
    MEMBER_MODE_NOT_OFFERED,
    MEMBERSHIP_REQUIRED,
    PROVIDER_UNAVAILABLE,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from svc_common.names import BACKEND_TYPE_ENUMS, BACKEND_TYPE_NAMES, MODE_ENUMS, MODE_NAMES

log = logging.getLogger(__name__)

MAX_USER_ID_CHARS = 256
MAX_OPTIONS = 32
MAX_OPTION_VALUE_CHARS = 1024
MAX_OPTIONS_TOTAL_CHARS = 8 * 1024
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,255}$")
_OPTION_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def _key_route(backend_type: str) -> str:
    return f"PUT /api/settings/llm/{backend_type}/api-key"


def _user(who: Caller) -> str:
    user_id = who.require_user()
    if len(user_id) > MAX_USER_ID_CHARS or not user_id.isprintable():
        raise InvalidArgument("x-user-id must be at most 256 printable characters")
    return user_id


def _backend_type(value: int, *, allow_unspecified: bool = False) -> str | None:
    name = BACKEND_TYPE_NAMES.get(value)  # type: ignore[call-overload]
    if name is None and not (allow_unspecified and value == common_pb2.BACKEND_TYPE_UNSPECIFIED):
        raise InvalidArgument(
            "backend_type must be one of text, multimodal, image", param="backend_type"
        )
    return name


def _safe_text(value: str, limit: int = 64) -> str:
    """User input fit to quote in a message: short and printable."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in value[:limit])
    return shown + ("…" if len(value) > limit else "")


def _is_clean(value: str) -> bool:
    """No control, format, surrogate or unassigned characters (newlines and tabs allowed)."""
    return all(
        ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
        for ch in value
    )


def _default_mode(preset: Preset, who: Caller) -> str:
    return "member" if preset.member_allowed and who.is_member else "byok"


def _timestamp(config: StoredConfig | None) -> int:
    return int(config.updated_at.timestamp()) if config else 0


class SettingsServicer(settings_pb2_grpc.SettingsServiceServicer):
    def __init__(
        self,
        presets: PresetCatalog,
        keyring: KeyRing,
        allowed_base_url_hosts: list[str],
    ) -> None:
        self._presets = presets
        self._keyring = keyring
        self._allowed_hosts = frozenset(allowed_base_url_hosts)
        self._store: ConfigStore | None = None
        self._changes: ChangePublisher | None = None

    def bind(self, store: ConfigStore, changes: ChangePublisher) -> None:
        """Attach the database and Redis once the server has opened them (at start-up)."""
        self._store = store
        self._changes = changes

    @property
    def store(self) -> ConfigStore:
        assert self._store is not None, "SettingsServicer used before bind()"
        return self._store

    async def _publish(self, user_id: str, backend_type: str) -> None:
        assert self._changes is not None
        await self._changes.publish(user_id, backend_type)

    # --- presets ---------------------------------------------------------------------------

    def _preset(self, backend_type: str, provider: str) -> Preset:
        preset = self._presets.get(backend_type, provider) if _PROVIDER.match(provider) else None
        if preset is None:
            offered = ", ".join(self._presets.providers(backend_type)) or "none"
            shown = f"{_safe_text(provider)!r} " if provider else ""
            raise InvalidArgument(
                f"provider {shown}is not offered for {backend_type}; choose one of: {offered}",
                param="provider",
            )
        return preset

    def _default_preset(self, backend_type: str) -> Preset:
        preset = self._presets.default(backend_type)
        if preset is None:
            raise FailedPrecondition(
                f"no providers are configured for {backend_type}", reason=PROVIDER_UNAVAILABLE
            )
        return preset

    # --- views -----------------------------------------------------------------------------

    def _config_message(
        self,
        backend_type: str,
        config: StoredConfig | None,
        key: KeyInfo | None,
        who: Caller,
    ) -> settings_pb2.BackendConfig:
        message = settings_pb2.BackendConfig(backend_type=BACKEND_TYPE_ENUMS[backend_type])
        if config is not None:
            message.provider = config.provider
            message.model = config.model
            if config.temperature is not None:
                message.temperature = config.temperature
            message.mode = MODE_ENUMS[config.mode]
            message.options.update(config.options)
            message.base_url = config.base_url
            message.version = config.version
            message.updated_at = _timestamp(config)
        else:
            preset = self._default_preset(backend_type)
            message.provider = preset.provider
            message.model = preset.default_model
            if preset.temperature_default is not None:
                message.temperature = preset.temperature_default
            message.mode = MODE_ENUMS[_default_mode(preset, who)]
        if key is not None:
            message.api_key.CopyFrom(
                settings_pb2.ApiKeyInfo(
                    is_set=True, hint=key.hint, fingerprint=key.fingerprint, provider=key.provider
                )
            )
        return message

    async def _views(
        self, user_id: str, backend_types: list[str]
    ) -> dict[str, tuple[StoredConfig | None, KeyInfo | None]]:
        views = await self.store.view(user_id, backend_types)
        for backend_type, (config, key) in views.items():
            if key is not None and key.sealed is not None:
                key = await self._fingerprinted(user_id, backend_type, key)
                views[backend_type] = (config, key)
        return views

    async def _fingerprinted(self, user_id: str, backend_type: str, key: KeyInfo) -> KeyInfo:
        """A key stored without a (keyed) fingerprint, with one computed now and stored."""
        assert key.sealed is not None
        sealed = key.sealed
        try:
            api_key = self._keyring.decrypt(
                sealed.key_id,
                sealed.nonce,
                sealed.ciphertext,
                associated_data(user_id, backend_type, sealed.provider),
            )
        except UndecryptableKey as err:
            # Shown without a fingerprint; using the key reports the problem (API_KEY_UNREADABLE).
            log.warning("%s API key unreadable: %s", backend_type, err, extra={"user_id": user_id})
            return KeyInfo(key.provider, key.hint, "")
        fingerprint = self._keyring.fingerprint(sealed.key_id, user_id, api_key)
        await self.store.set_fingerprint(user_id, backend_type, sealed.nonce, fingerprint)
        return KeyInfo(key.provider, key.hint, fingerprint)

    async def _view(
        self, who: Caller, user_id: str, backend_type: str
    ) -> settings_pb2.BackendConfig:
        config, key = (await self._views(user_id, [backend_type]))[backend_type]
        return self._config_message(backend_type, config, key, who)

    # --- RPCs --------------------------------------------------------------------------------

    async def GetConfigs(
        self, request: settings_pb2.GetConfigsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.GetConfigsResponse:
        who = caller(context)
        user_id = _user(who)
        names = list(BACKEND_TYPE_ENUMS)
        views = await self._views(user_id, names)
        return settings_pb2.GetConfigsResponse(
            configs=[self._config_message(name, *views[name], who) for name in names]
        )

    async def GetConfig(
        self, request: settings_pb2.GetConfigRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.BackendConfig:
        who = caller(context)
        user_id = _user(who)
        backend_type = _backend_type(request.backend_type)
        assert backend_type is not None
        return await self._view(who, user_id, backend_type)

    async def PutConfig(
        self, request: settings_pb2.PutConfigRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.BackendConfig:
        who = caller(context)
        user_id = _user(who)
        wanted = request.config
        backend_type = _backend_type(wanted.backend_type)
        assert backend_type is not None
        if request.expected_version < -1:
            raise InvalidArgument(
                "expected_version must be -1 (no check), 0 (never saved) or a version you read",
                param="expected_version",
            )
        values = await self._validated(backend_type, wanted, who)
        saved = await self.store.put(user_id, backend_type, values, request.expected_version)
        if saved is None:
            current = await self.store.current_version(user_id, backend_type)
            raise Conflict(
                f"the {backend_type} config has changed (you sent version "
                f"{request.expected_version}, the current version is {current}): "
                "read it again and reapply your change",
                param="expected_version",
            )
        log.info(
            "saved %s config (version %d)", backend_type, saved.version, extra={"user_id": user_id}
        )
        await self._publish(user_id, backend_type)
        return await self._view(who, user_id, backend_type)

    async def _validated(
        self, backend_type: str, wanted: settings_pb2.BackendConfig, who: Caller
    ) -> ConfigNewValues:
        if not wanted.provider:
            raise InvalidArgument(
                f"provider is required; offered for {backend_type}: "
                + ", ".join(self._presets.providers(backend_type)),
                param="provider",
            )
        preset = self._preset(backend_type, wanted.provider)

        model = wanted.model.strip() or preset.default_model
        if preset.any_model:
            if not _MODEL.match(model):
                raise InvalidArgument(
                    "model must be 1-256 characters: letters, digits and . _ : / @ + -",
                    param="model",
                )
        elif model not in preset.models:
            raise InvalidArgument(
                f"model {_safe_text(model)!r} is not offered by {preset.provider} "
                f"for {backend_type}; "
                f"choose one of: {', '.join(preset.models)}",
                param="model",
            )

        temperature: float | None = None
        if wanted.HasField("temperature"):
            temperature = wanted.temperature
            if not preset.has_temperature:
                raise InvalidArgument(
                    f"{backend_type} models take no temperature: leave it unset",
                    param="temperature",
                )
            assert preset.temperature_min is not None and preset.temperature_max is not None
            if not (
                math.isfinite(temperature)
                and preset.temperature_min <= temperature <= preset.temperature_max
            ):
                raise InvalidArgument(
                    f"temperature for {preset.provider} must be between {preset.temperature_min:g} "
                    f"and {preset.temperature_max:g}",
                    param="temperature",
                )

        if wanted.mode == common_pb2.MODE_UNSPECIFIED:
            mode = _default_mode(preset, who)
        elif wanted.mode in MODE_NAMES:
            mode = MODE_NAMES[wanted.mode]
        else:
            raise InvalidArgument("mode must be member or byok", param="mode")
        if mode == "member":
            if not preset.member_allowed:
                raise FailedPrecondition(
                    f"{preset.display_name} does not offer member mode for {backend_type}: "
                    "choose byok and set your own API key",
                    reason=MEMBER_MODE_NOT_OFFERED,
                    param="mode",
                )
            if not who.is_member:
                raise PermissionDenied(
                    "member mode is for members only: choose byok and set your own API key",
                    reason=MEMBERSHIP_REQUIRED,
                    param="mode",
                )

        base_url = wanted.base_url.strip()
        if base_url:
            if not preset.user_base_url_allowed:
                raise InvalidArgument(
                    f"{preset.display_name} does not take a custom base_url: leave it empty",
                    param="base_url",
                )
            try:
                base_url = await check_base_url(base_url, self._allowed_hosts)
            except BaseUrlRejected as err:
                raise InvalidArgument(str(err), param="base_url") from None

        options = _validated_options(dict(wanted.options))
        if mode == "member":
            _check_member_fallback(
                preset,
                backend_type,
                options.get("fallback", ""),
                self._presets.providers(backend_type),
            )
        return ConfigNewValues(
            provider=preset.provider,
            model=model,
            temperature=temperature,
            mode=mode,
            options=options,
            base_url=base_url,
        )

    async def DeleteConfig(
        self, request: settings_pb2.DeleteConfigRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DeleteConfigResponse:
        user_id = _user(caller(context))
        backend_type = _backend_type(request.backend_type)
        assert backend_type is not None
        # The key stays, so a later switch back to byok works (DeleteApiKey removes it).
        await self.store.delete_config(user_id, backend_type)
        await self._publish(user_id, backend_type)
        return settings_pb2.DeleteConfigResponse()

    async def SetApiKey(
        self, request: settings_pb2.SetApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ApiKeyInfo:
        who = caller(context)
        user_id = _user(who)
        backend_type = _backend_type(request.backend_type)
        assert backend_type is not None
        try:
            api_key = normalize_api_key(request.api_key)
        except InvalidApiKey as err:
            raise InvalidArgument(str(err), param="api_key") from None
        if request.provider:
            preset = self._preset(backend_type, request.provider)
        else:
            config, _ = (await self.store.view(user_id, [backend_type]))[backend_type]
            preset = (
                self._preset(backend_type, config.provider)
                if config is not None
                else self._default_preset(backend_type)
            )
        encrypted = self._keyring.encrypt(
            api_key, associated_data(user_id, backend_type, preset.provider)
        )
        hint = key_hint(api_key)
        fingerprint = self._keyring.fingerprint(encrypted.key_id, user_id, api_key)
        await self.store.set_key(
            user_id, backend_type, preset.provider, encrypted, hint, fingerprint
        )
        log.info("set %s API key for %s", backend_type, preset.provider, extra={"user_id": user_id})
        await self._publish(user_id, backend_type)
        return settings_pb2.ApiKeyInfo(
            is_set=True, hint=hint, fingerprint=fingerprint, provider=preset.provider
        )

    async def DeleteApiKey(
        self, request: settings_pb2.DeleteApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DeleteApiKeyResponse:
        user_id = _user(caller(context))
        backend_type = _backend_type(request.backend_type)
        assert backend_type is not None
        await self.store.delete_key(user_id, backend_type)
        await self._publish(user_id, backend_type)
        return settings_pb2.DeleteApiKeyResponse()

    async def ListPresets(
        self, request: settings_pb2.ListPresetsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ListPresetsResponse:
        backend_type = _backend_type(request.backend_type, allow_unspecified=True)
        return settings_pb2.ListPresetsResponse(
            presets=[p.to_proto() for p in self._presets.all(backend_type)]
        )

    async def ResolveConfig(
        self, request: settings_pb2.ResolveConfigRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ResolvedConfig:
        who = caller(context)
        if who.service not in MODEL_SERVICES:
            raise PermissionDenied(
                "only model services may resolve configs (the answer holds the user's API key)"
            )
        user_id = _user(who)
        backend_type = _backend_type(request.backend_type)
        assert backend_type is not None
        config, key = await self.store.for_resolve(user_id, backend_type)

        if config is None:
            preset = self._default_preset(backend_type)
            model, temperature = preset.default_model, preset.temperature_default
            mode, options, base_url, version = _default_mode(preset, who), {}, "", 0
        else:
            found = self._presets.get(backend_type, config.provider)
            if found is None:
                raise FailedPrecondition(
                    f"{config.provider} is no longer offered for {backend_type}: choose another "
                    f"provider with PUT /api/settings/llm/{backend_type}",
                    reason=PROVIDER_UNAVAILABLE,
                )
            preset = found
            model = config.model
            temperature = (
                config.temperature if config.temperature is not None else preset.temperature_default
            )
            mode, options, base_url, version = (
                config.mode,
                config.options,
                config.base_url,
                config.version,
            )

        resolved = settings_pb2.ResolvedConfig(
            backend_type=BACKEND_TYPE_ENUMS[backend_type],
            provider=preset.provider,
            api_style=preset.api_style,
            model=model,
            mode=MODE_ENUMS[mode],
            options=options,
            base_url=base_url,
            config_version=version,
            # Empty for local servers: they serve whatever they have, any model name is allowed.
            models=() if preset.any_model else preset.models,
            temperature_min=preset.temperature_min or 0.0,
            temperature_max=preset.temperature_max or 0.0,
        )
        if temperature is not None and preset.has_temperature:
            resolved.temperature = temperature

        if mode == "member":
            resolved.platform_key_ref = self._platform_key_ref(preset, backend_type, who)
        else:
            api_key = self._byok_key(preset, backend_type, user_id, key)
            if api_key is not None:
                resolved.api_key = api_key
        return resolved

    def _platform_key_ref(self, preset: Preset, backend_type: str, who: Caller) -> str:
        if not preset.member_allowed:
            raise FailedPrecondition(
                f"{preset.display_name} no longer offers member mode for {backend_type}: "
                f"switch to byok with PUT /api/settings/llm/{backend_type}",
                reason=MEMBER_MODE_NOT_OFFERED,
            )
        if not who.is_member:
            raise FailedPrecondition(
                f"your {backend_type} config uses member mode, which needs a membership: "
                f"switch to byok and set your own key with {_key_route(backend_type)}",
                reason=MEMBERSHIP_REQUIRED,
            )
        return preset.provider

    def _byok_key(
        self, preset: Preset, backend_type: str, user_id: str, key: StoredKey | None
    ) -> str | None:
        """The user's decrypted key; None only where a key is optional (local servers)."""
        if key is not None and key.provider == preset.provider:
            try:
                return self._keyring.decrypt(
                    key.key_id,
                    key.nonce,
                    key.ciphertext,
                    associated_data(user_id, backend_type, key.provider),
                )
            except UndecryptableKey as err:
                log.error(
                    "%s API key unreadable: %s", backend_type, err, extra={"user_id": user_id}
                )
                raise FailedPrecondition(
                    f"your stored API key for {backend_type} cannot be read: set it again with "
                    f"{_key_route(backend_type)}",
                    reason=API_KEY_UNREADABLE,
                ) from None
        if preset.is_local:
            return None
        if key is not None:
            raise FailedPrecondition(
                f"your {backend_type} API key is for {key.provider}, but the config uses "
                f"{preset.provider}: set a {preset.provider} key with {_key_route(backend_type)}",
                reason=API_KEY_MISSING,
            )
        raise FailedPrecondition(
            f"no API key set for {backend_type} (byok): set one with {_key_route(backend_type)}",
            reason=API_KEY_MISSING,
        )


def _check_member_fallback(
    preset: Preset, backend_type: str, spec: str, providers: list[str]
) -> None:
    """In member mode the fallback runs on the platform's key and is paid from the user's
    credits, so it must be another model this preset offers (issue 7). The model services check
    it again when they use it, and billing-svc refuses a hold for a route without a price.

    Read as the model services read it: "provider:model" when the prefix names a provider,
    else the whole value is a model of the config's provider ("llama3:8b" is a model).
    """
    spec = spec.strip()
    if not spec:
        return
    prefix, sep, rest = spec.partition(":")
    if sep and rest and (prefix == preset.provider or prefix in providers):
        provider, model = prefix, rest
    else:
        provider, model = preset.provider, spec
    if provider == preset.provider and (
        model in preset.models if not preset.any_model else bool(_MODEL.match(model))
    ):
        return
    offered = f"one of: {', '.join(preset.models)}" if preset.models else "a model it serves"
    raise InvalidArgument(
        f"in member mode options.fallback must be another {preset.provider} model offered for "
        f"{backend_type}, {offered}; or leave it empty",
        param="options.fallback",
    )


def _validated_options(options: dict[str, str]) -> dict[str, str]:
    if len(options) > MAX_OPTIONS:
        raise InvalidArgument(f"at most {MAX_OPTIONS} options are allowed", param="options")
    total = 0
    for key, value in options.items():
        if not _OPTION_KEY.match(key):
            raise InvalidArgument(
                "option names must be 1-64 letters, digits, or . _ -", param="options"
            )
        if len(value) > MAX_OPTION_VALUE_CHARS or not _is_clean(value):
            raise InvalidArgument(
                f"option {key!r} must be at most {MAX_OPTION_VALUE_CHARS} characters without "
                "control characters",
                param="options",
            )
        total += len(key) + len(value)
    if total > MAX_OPTIONS_TOTAL_CHARS:
        raise InvalidArgument(
            f"options may hold at most {MAX_OPTIONS_TOTAL_CHARS} characters in all", param="options"
        )
    return options
