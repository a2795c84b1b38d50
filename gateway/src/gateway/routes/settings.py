"""LLM settings: a config per backend type (text, multimodal, image) and its write-only API key.

Optimistic concurrency: GET answers `ETag: "<version>"`; PUT takes `If-Match` (or `version` in
the body) and answers 409 when the stored config has changed since.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway import schemas
from gateway.auth import User
from gateway.clients import SettingsClient as SettingsClientType
from gateway.deps import CurrentUser, RequestId, SettingsClient
from gateway.errors import ApiError, invalid
from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2
from svc_common.names import (
    BACKEND_TYPE_ENUMS,
    BACKEND_TYPE_NAMES,
    BACKEND_TYPES,
    MODE_ENUMS,
    MODE_NAMES,
)

router = APIRouter(prefix="/api/settings/llm", tags=["settings"])

UNCHECKED = -1
PRESETS = "presets"
_VERSION = re.compile(r"[0-9]{1,19}")

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorResponse} for status in (400, 401, 404, 409, 503)
}


async def _backend_type(
    request: Request,
    backend_type: Annotated[
        str,
        # A plain string, so that an unknown one is a 404 that names the three; documented as
        # the enum it is.
        Path(json_schema_extra={"enum": list(BACKEND_TYPES)}),
    ],
) -> common_pb2.BackendType.ValueType:
    value = BACKEND_TYPE_ENUMS.get(backend_type)
    if backend_type == PRESETS and request.url.path.endswith(f"/{PRESETS}"):
        # PUT or DELETE on the presets (GET is its own route): no such method there.
        raise StarletteHTTPException(405)
    if value is None:
        raise ApiError(
            404,
            f"unknown backend type '{backend_type[:40]}': use text, multimodal or image",
            code="unknown_backend_type",
            param="backend_type",
        )
    return value


BackendType = Annotated[common_pb2.BackendType.ValueType, Depends(_backend_type)]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def _etag(version: int) -> dict[str, str]:
    return {"etag": f'"{version}"'}


def api_key_json(info: settings_pb2.ApiKeyInfo) -> dict[str, Any]:
    return {
        "is_set": info.is_set,
        "hint": info.hint,
        "fingerprint": info.fingerprint,
        "provider": info.provider,
    }


def config_json(
    config: settings_pb2.BackendConfig, backend_type: common_pb2.BackendType.ValueType
) -> dict[str, Any]:
    updated_at = (
        datetime.fromtimestamp(config.updated_at, UTC).isoformat().replace("+00:00", "Z")
        if config.updated_at
        else None
    )
    return {
        "backend_type": BACKEND_TYPE_NAMES[config.backend_type or backend_type],
        "provider": config.provider,
        "model": config.model,
        "temperature": config.temperature if config.HasField("temperature") else None,
        "mode": MODE_NAMES.get(config.mode),
        "options": dict(config.options),
        "base_url": config.base_url,
        "version": config.version,
        "api_key": api_key_json(config.api_key),
        "updated_at": updated_at,
    }


def _all_configs_json(response: settings_pb2.GetConfigsResponse) -> dict[str, Any]:
    by_type = {config.backend_type: config for config in response.configs}
    return {
        name: config_json(by_type.get(value, settings_pb2.BackendConfig()), value)
        for name, value in BACKEND_TYPE_ENUMS.items()
    }


def _if_match_version(if_match: str | None) -> int | None:
    """The version an If-Match header names: "3", W/"3" or 3; `*` means any."""
    if if_match is None:
        return None
    tag = if_match.strip()
    if tag == "*":
        return UNCHECKED
    tag = tag.removeprefix("W/").strip('"')
    # ASCII digits only (str.isdigit also takes "²"), and a version the services can hold.
    if not _VERSION.fullmatch(tag) or int(tag) > schemas.INT64_MAX:
        raise invalid('If-Match must be the ETag of a config you read, e.g. "3"', param="If-Match")
    return int(tag)


def _put_request(
    backend_type: common_pb2.BackendType.ValueType,
    update: schemas.ConfigUpdate,
    if_match: int | None,
) -> settings_pb2.PutConfigRequest:
    if if_match is not None and update.version is not None and if_match != update.version:
        raise invalid("If-Match and the body's version disagree: send one of them", param="version")
    expected = if_match if if_match is not None else update.version
    config = settings_pb2.BackendConfig(
        backend_type=backend_type,
        provider=update.provider,
        model=update.model,
        mode=MODE_ENUMS[update.mode] if update.mode else common_pb2.MODE_UNSPECIFIED,
        options=update.options,
        base_url=update.base_url,
    )
    if update.temperature is not None:
        config.temperature = update.temperature
    return settings_pb2.PutConfigRequest(
        config=config, expected_version=UNCHECKED if expected is None else expected
    )


async def _put_config(
    client: SettingsClientType,
    backend_type: common_pb2.BackendType.ValueType,
    update: schemas.ConfigUpdate,
    if_match: int | None,
    user: User,
    request_id: str,
) -> settings_pb2.BackendConfig:
    config = await client.put_config(_put_request(backend_type, update, if_match), user, request_id)
    if update.api_key is not None:
        # After the config, so that a version conflict changes nothing; the key goes with the
        # provider just saved.
        key_info = await client.set_api_key(
            settings_pb2.SetApiKeyRequest(
                backend_type=backend_type,
                api_key=update.api_key.get_secret_value(),
                provider=config.provider or update.provider,
            ),
            user,
            request_id,
        )
        config.api_key.CopyFrom(key_info)
    return config


IfMatch = Annotated[
    str | None,
    Header(alias="if-match", description='The ETag of the config you read, e.g. "3"'),
]


@router.get(
    "",
    summary="All three configs: text, multimodal, image",
    response_model=None,
    responses={200: {"model": schemas.AllConfigs}, **_ERRORS},
)
async def get_llm_settings(
    user: CurrentUser, request_id: RequestId, client: SettingsClient
) -> Response:
    return _json(_all_configs_json(await client.get_configs(user, request_id)))


@router.put(
    "",
    summary="Update any of the three configs (or, legacy body, the text config)",
    response_model=None,
    responses={200: {"model": schemas.AllConfigs}, **_ERRORS},
)
async def put_llm_settings(
    user: CurrentUser,
    request_id: RequestId,
    body: Annotated[schemas.LlmSettingsUpdate, Body()],
    client: SettingsClient,
    if_match: IfMatch = None,
) -> Response:
    if isinstance(body, schemas.AllConfigsUpdate):
        if if_match is not None:
            raise invalid(
                "If-Match names one config: with several, send each one's 'version' in its body",
                param="If-Match",
            )
        for name, value in BACKEND_TYPE_ENUMS.items():
            update = getattr(body, name)
            if update is not None:
                await _put_config(client, value, update, None, user, request_id)
    else:
        await _put_config(
            client,
            common_pb2.BACKEND_TYPE_TEXT,
            body,
            _if_match_version(if_match),
            user,
            request_id,
        )
    return _json(_all_configs_json(await client.get_configs(user, request_id)))


# Before /{backend_type}, which would otherwise take "presets" for a backend type.
@router.get(
    f"/{PRESETS}",
    summary="Provider presets: models, temperature range, whether member mode is allowed",
    response_model=None,
    responses={200: {"model": schemas.PresetList}, **_ERRORS},
)
async def list_presets(
    user: CurrentUser,
    request_id: RequestId,
    client: SettingsClient,
    backend_type: Annotated[
        schemas.BackendTypeName | None, Query(description="Only this backend type's presets")
    ] = None,
) -> Response:
    value = (
        BACKEND_TYPE_ENUMS[backend_type] if backend_type else common_pb2.BACKEND_TYPE_UNSPECIFIED
    )
    response = await client.list_presets(value, user, request_id)
    presets = [
        {
            "provider": p.provider,
            "backend_type": BACKEND_TYPE_NAMES.get(p.backend_type, "text"),
            "display_name": p.display_name,
            "api_style": p.api_style,
            "models": list(p.models),
            "default_model": p.default_model,
            "temperature_min": p.temperature_min,
            "temperature_max": p.temperature_max,
            "default_temperature": p.default_temperature,
            "member_allowed": p.member_allowed,
            "user_base_url_allowed": p.user_base_url_allowed,
            "default_base_url": p.default_base_url,
        }
        for p in response.presets
    ]
    return _json({"presets": presets})


@router.get(
    "/{backend_type}",
    summary="One backend type's config (ETag: its version)",
    response_model=None,
    responses={200: {"model": schemas.BackendConfig}, **_ERRORS},
)
async def get_llm_config(
    user: CurrentUser, request_id: RequestId, backend_type: BackendType, client: SettingsClient
) -> Response:
    config = await client.get_config(backend_type, user, request_id)
    return _json(config_json(config, backend_type), headers=_etag(config.version))


@router.put(
    "/{backend_type}",
    summary="Replace one backend type's config (If-Match: the version you read)",
    response_model=None,
    responses={200: {"model": schemas.BackendConfig}, **_ERRORS},
)
async def put_llm_config(
    user: CurrentUser,
    request_id: RequestId,
    backend_type: BackendType,
    body: Annotated[schemas.ConfigUpdate, Body()],
    client: SettingsClient,
    if_match: IfMatch = None,
) -> Response:
    config = await _put_config(
        client, backend_type, body, _if_match_version(if_match), user, request_id
    )
    return _json(config_json(config, backend_type), headers=_etag(config.version))


@router.delete(
    "/{backend_type}",
    summary="Forget one backend type's config (its defaults apply again)",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
)
async def delete_llm_config(
    user: CurrentUser, request_id: RequestId, backend_type: BackendType, client: SettingsClient
) -> Response:
    await client.delete_config(backend_type, user, request_id)
    return Response(status_code=204)


@router.put(
    "/{backend_type}/api-key",
    summary="Store your API key for a backend type (write-only: only a hint is ever shown)",
    response_model=None,
    responses={200: {"model": schemas.ApiKeyInfo}, **_ERRORS},
)
async def put_api_key(
    user: CurrentUser,
    request_id: RequestId,
    backend_type: BackendType,
    body: Annotated[schemas.ApiKeyUpdate, Body()],
    client: SettingsClient,
) -> Response:
    request = settings_pb2.SetApiKeyRequest(
        backend_type=backend_type, api_key=body.api_key.get_secret_value(), provider=body.provider
    )
    return _json(api_key_json(await client.set_api_key(request, user, request_id)))


@router.delete(
    "/{backend_type}/api-key",
    summary="Delete your API key for a backend type",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
)
async def delete_api_key(
    user: CurrentUser, request_id: RequestId, backend_type: BackendType, client: SettingsClient
) -> Response:
    await client.delete_api_key(backend_type, user, request_id)
    return Response(status_code=204)
