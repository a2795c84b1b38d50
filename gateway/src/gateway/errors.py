"""Every error the gateway returns, in OpenAI's shape: {"error": {message, type, code, param}}.

Failed backend calls arrive as svc_common RemoteError; `from_remote` maps them to HTTP here and
nowhere else.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from svc_common import errors as reasons
from svc_common.errors import RemoteError

# After google/rpc/code.proto's HTTP mapping; a reason below overrides it where the product says.
_HTTP_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Every reason svc_common.errors declares (REASONS), with the OpenAI-style `code` the user gets
# and the HTTP status where the reason decides it (None: the gRPC code's). A client can act on
# the code alone: `missing_api_key` means "set a key", not some precondition or other.
BY_REASON: dict[str, tuple[int | None, str]] = {
    reasons.INSUFFICIENT_CREDITS: (402, "insufficient_credits"),
    reasons.PROVIDER_AUTH_FAILED: (401, "provider_auth_failed"),
    reasons.UPSTREAM_ERROR: (502, "upstream_error"),
    reasons.UPSTREAM_RATE_LIMITED: (429, "rate_limit_exceeded"),
    reasons.UPSTREAM_UNAVAILABLE: (503, "upstream_unavailable"),
    reasons.UPSTREAM_TIMEOUT: (504, "upstream_timeout"),
    reasons.VERSION_CONFLICT: (None, "version_conflict"),
    reasons.API_KEY_MISSING: (None, "missing_api_key"),
    reasons.API_KEY_UNREADABLE: (None, "api_key_unreadable"),
    reasons.MEMBERSHIP_REQUIRED: (None, "membership_required"),
    reasons.MEMBER_MODE_NOT_OFFERED: (None, "member_mode_not_offered"),
    reasons.PROVIDER_UNAVAILABLE: (None, "provider_unavailable"),
}


def http_status(err: RemoteError) -> int:
    """The HTTP status for a failed backend call: its reason's, else its gRPC code's."""
    status, _ = BY_REASON.get(err.reason, (None, ""))
    return status or _HTTP_BY_CODE.get(err.code, 500)


# Statuses a backend did not set itself (the channel, a deadline, a crash): their details name
# internal addresses or nothing useful, so the user gets these words instead.
_GENERIC_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "{backend} is unavailable; try again shortly",
    grpc.StatusCode.DEADLINE_EXCEEDED: "{backend} did not answer in time; try again",
    grpc.StatusCode.CANCELLED: "the request was cancelled",
    grpc.StatusCode.UNIMPLEMENTED: "{backend} does not support this operation yet",
}


class ApiError(Exception):
    """An error response: raise it anywhere in a handler or dependency."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, param=self.param)

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )


def error_type(status: int) -> str:
    """OpenAI's error type for `status`: every 4xx without a type of its own (405, 415, 431...)
    is the caller's to fix, so invalid_request_error, never server_error."""
    if status == 401:
        return "authentication_error"
    if status == 402:
        return "insufficient_quota"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "server_error" if status < 503 else "service_unavailable"


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": error_type(status),
            "code": code,
            "param": param,
        }
    }


def invalid(message: str, *, param: str | None = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def from_remote(err: RemoteError, backend: str) -> ApiError:
    """The HTTP error for a failed call to `backend` (e.g. "text-svc")."""
    status = http_status(err)
    code = BY_REASON[err.reason][1] if err.reason in BY_REASON else None
    if code is None:
        if err.code == grpc.StatusCode.NOT_FOUND and err.param == "model":
            code = "model_not_found"
        elif err.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            code = "rate_limit_exceeded"
        else:
            code = err.code.name.lower()
    # A status our services raised carries an ErrorInfo reason and a message meant for the user.
    if err.reason:
        message = err.message
    elif err.code in _GENERIC_MESSAGES:
        message = _GENERIC_MESSAGES[err.code].format(backend=backend)
    elif status >= 500:
        message = f"{backend} failed to handle the request"
    else:
        message = err.message or err.code.name.lower()
    headers = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    return ApiError(status, message, code=code, param=err.param, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "text", "temperature") -> "text.temperature"; ("query", "from") -> "from"
    parts = [str(p) for p in loc[1:] if not (isinstance(p, str) and p.startswith("tag:"))]
    return ".".join(parts) or str(loc[0] if loc else "body")


def _validation_error(exc: RequestValidationError) -> ApiError:
    first = exc.errors()[0] if exc.errors() else {}
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return invalid("the request body is not valid JSON", code="invalid_json")
    param = _field_name(loc)
    if first.get("type") == "missing":
        return invalid(
            f"missing required parameter '{param}'", param=param, code="missing_required_parameter"
        )
    # The error's message only, never its input: a rejected body may hold an API key.
    return invalid(f"invalid value for '{param}': {first.get('msg', 'invalid')}", param=param)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _validation_error(exc).response()

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            # Starlette names only the methods of the first route that matched the path; the
            # other routes of the same path (PUT beside GET) belong in Allow too.
            allowed = _allowed_methods(request)
            if allowed:
                headers["allow"] = ", ".join(allowed)
        err = ApiError(exc.status_code, message, code=None, headers=headers)
        return err.response()

    async def on_unexpected_error(request: Request, exc: Exception) -> Response:
        # Starlette's ServerErrorMiddleware calls this for anything no other handler took (in a
        # route, a dependency or a middleware), logs it after the answer, and when the response
        # had already started, closes the connection instead. The user gets the usual shape and
        # the request id to quote; never the exception's text, which may hold a key.
        headers = {}
        rid = request.scope.get("state", {}).get("request_id")
        if rid:
            headers["x-request-id"] = rid
        return ApiError(
            500,
            "the gateway failed to handle the request; try again, and quote the x-request-id "
            "if it keeps failing",
            code="server_error",
            headers=headers,
        ).response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(Exception, on_unexpected_error)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document lists for the request's path (the routes as declared,
    through FastAPI's public document rather than its router internals)."""
    app = request.app
    table = getattr(app.state, "allowed_methods", None)
    if table is None:
        table = []
        for template, operations in app.openapi()["paths"].items():
            regex, _, _ = compile_path(template)
            methods = sorted(method.upper() for method in operations)
            table.append((regex, "{" not in template, methods))
        app.state.allowed_methods = table
    path = request.url.path
    matches = [(static, methods) for regex, static, methods in table if regex.match(path)]
    # A fixed path (/api/settings/llm/presets) is its own resource, not a value of the
    # parameter beside it (/api/settings/llm/{backend_type}).
    if any(static for static, _ in matches):
        matches = [(static, methods) for static, methods in matches if static]
    return sorted({method for _, methods in matches for method in methods})
