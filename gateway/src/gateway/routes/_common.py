"""What the model routes (text, multimodal, images) answer alike: the JSON content-type check,
a unary call awaited while the client may leave, the OpenAI model card and list, the provider
status, and their error responses in the OpenAPI document. One place, so the three routes keep
the same shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import orjson
from fastapi import Request
from starlette.responses import Response

from gateway import schemas
from gateway.clients import PendingCall
from gateway.errors import ApiError
from gateway.streaming import CREDITS_HEADER, CallCancelled, DisconnectWatcher


class _Model(Protocol):
    id: str
    provider: str
    owned_by: str


class _Status(Protocol):
    ok: bool
    provider: str
    model: str
    detail: str
    latency_ms: int


class _Billed(Protocol):
    balance_micros: int  # -1: not told (no billing on this call)


R = TypeVar("R", bound=_Billed)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry of each error status a route may answer."""
    return {status: {"model": schemas.ErrorResponse} for status in statuses}


def json_response(body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), headers=headers, media_type="application/json")


def check_json_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            f"unsupported content type '{media_type}': send the body as application/json",
            code="unsupported_media_type",
        )


async def unary_response(
    request: Request, call: PendingCall[R], body: Callable[[R], bytes]
) -> Response:
    """The call's answer as JSON with the caller's balance header; a 499 when the client left
    first (the call is cancelled, so the work behind it stops; 499 is what the metrics record)."""
    watcher = DisconnectWatcher(request.receive, call.cancel)
    try:
        response = await call.result()
    except CallCancelled:
        return Response(status_code=499)
    finally:
        watcher.stop()
    headers = {}
    if response.balance_micros >= 0:
        headers[CREDITS_HEADER] = str(response.balance_micros)
    return Response(body(response), headers=headers, media_type="application/json")


def model_card(m: _Model, created: int = 0) -> dict[str, Any]:
    """One model in OpenAI's shape; `created` is 0 where the service tells no time."""
    return {"id": m.id, "object": "model", "created": created, "owned_by": m.owned_by or m.provider}


def model_list_response(cards: Iterable[dict[str, Any]]) -> Response:
    return json_response({"object": "list", "data": list(cards)})


def status_response(status: _Status) -> Response:
    return json_response(
        {
            "ok": status.ok,
            "provider": status.provider,
            "model": status.model,
            "detail": status.detail,
            "latency_ms": status.latency_ms,
        }
    )
