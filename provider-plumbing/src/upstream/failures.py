"""Upstream failures, classified in the terms that decide retry, fallback and the status a
caller gets; the same for every provider and every model service."""

from __future__ import annotations

import asyncio
import email.utils
import enum
import time
from collections.abc import Mapping

import aiohttp
import orjson

from svc_common.logging import scrub


class Failure(enum.Enum):
    AUTH = "auth"  # 401/403: the key
    RATE_LIMITED = "rate_limited"  # 429
    UNAVAILABLE = "unavailable"  # 503/529, connection refused or reset
    ERROR = "error"  # 500/502 and other server failures, broken streams
    TIMEOUT = "timeout"  # no answer in time
    BAD_REQUEST = "bad_request"  # 4xx: the request itself (e.g. a model the provider does not know)
    # The platform would not go where the base URL leads: an address that is not allowed, or a
    # redirect (never followed). The user's base URL must change; retrying cannot help.
    BLOCKED = "blocked"


RETRYABLE = frozenset({Failure.RATE_LIMITED, Failure.UNAVAILABLE, Failure.ERROR})


class ProviderError(Exception):
    """An upstream failure. `detail` is safe to show a user: never a key, never a raw 401 body."""

    def __init__(
        self,
        failure: Failure,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.param = param

    @property
    def retryable(self) -> bool:
        return self.failure in RETRYABLE


def failure_for_status(status: int) -> Failure:
    if status in (401, 403):
        return Failure.AUTH
    if status == 429:
        return Failure.RATE_LIMITED
    if status in (503, 529):
        return Failure.UNAVAILABLE
    if status in (408, 504):
        return Failure.TIMEOUT
    if status >= 500:
        return Failure.ERROR
    return Failure.BAD_REQUEST


def status_error(status: int, headers: Mapping[str, str], upstream_message: str) -> ProviderError:
    """A ProviderError for an HTTP error status. The upstream message is kept only for 4xx other
    than 401/403 (a 401 body may quote the key, masked or not), and scrubbed even then."""
    failure = failure_for_status(status)
    if failure is Failure.BAD_REQUEST and upstream_message:
        detail = scrub(upstream_message)[:500]
    else:
        detail = f"HTTP {status}"
    param = "model" if status == 404 else None
    return ProviderError(
        failure, detail, status=status, retry_after=retry_after_seconds(headers), param=param
    )


def redirect_error(status: int) -> ProviderError:
    """A 3xx: redirects are never followed, whatever the target (it could be any address)."""
    return ProviderError(
        Failure.BLOCKED,
        f"the upstream answered with a redirect (HTTP {status}), which is not followed: "
        "set the base URL to the address the server really answers on",
        status=status,
        param="base_url",
    )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """retry-after-ms, else retry-after (seconds or an HTTP date), as the official SDKs do."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(raw: bytes) -> str:
    """The message in an error body: OpenAI/Anthropic {"error": {"message"}}, Ollama {"error"}."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else ""


def transport_error(err: Exception, *, mid_stream: bool = False) -> ProviderError:
    """A ProviderError for an aiohttp/transport failure (never its text: it may name addresses)."""
    if isinstance(err, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return ProviderError(Failure.TIMEOUT, "no answer in time")
    if isinstance(err, orjson.JSONDecodeError):
        return ProviderError(Failure.ERROR, "the provider sent an answer that is not JSON")
    if mid_stream:
        return ProviderError(Failure.ERROR, "the connection broke mid-answer")
    if isinstance(err, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
        return ProviderError(Failure.UNAVAILABLE, "could not reach the server")
    return ProviderError(Failure.ERROR, "the connection to the provider failed")
