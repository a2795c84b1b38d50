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

from svc_common import errors as svc_errors
from svc_common.errors import RemoteError, http_status, openai_error_type

# The OpenAI-style `code` for the reasons services put in their statuses.
_CODE_BY_REASON = {
    svc_errors.INSUFFICIENT_CREDITS: "insufficient_credits",
    svc_errors.PROVIDER_AUTH_FAILED: "provider_auth_failed",
    svc_errors.UPSTREAM_ERROR: "upstream_error",
    svc_errors.UPSTREAM_RATE_LIMITED: "rate_limit_exceeded",
    svc_errors.UPSTREAM_UNAVAILABLE: "upstream_unavailable",
    svc_errors.UPSTREAM_TIMEOUT: "upstream_timeout",
    svc_errors.VERSION_CONFLICT: "version_conflict",
}

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
    kind = openai_error_type(status)
    if kind == "server_error" and 400 <= status < 500:
        return "invalid_request_error"
    return kind


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
    code = _CODE_BY_REASON.get(err.reason)
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
