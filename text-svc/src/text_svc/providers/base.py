"""The one interface every provider adapter implements, and the normalised events it produces.

An adapter turns a ChatCall into provider HTTP and the provider's answer into `Delta`s followed by
one `Finish`. It classifies every upstream failure as a ProviderError; retries, timeouts, fallback
and the mapping to gRPC statuses live in text_svc.generation, the same for every provider.
"""

from __future__ import annotations

import email.utils
import enum
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from svc_common.logging import scrub


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant
    content: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One chat completion, provider-neutral. None means: leave it to the provider."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    finish_reason: str  # stop | length | content_filter
    usage: TokenUsage | None  # None: the provider sent none (the caller estimates)


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    finish_reason: str
    usage: TokenUsage | None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str = ""


class Failure(enum.Enum):
    """What went wrong upstream, in the terms that decide retry, fallback and the status."""

    AUTH = "auth"  # 401/403: the key
    RATE_LIMITED = "rate_limited"  # 429
    UNAVAILABLE = "unavailable"  # 503/529, connection refused or reset
    ERROR = "error"  # 500/502 and other server failures, broken streams
    TIMEOUT = "timeout"  # no answer in time
    BAD_REQUEST = "bad_request"  # 4xx: the request itself (e.g. a model the provider does not know)


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


def refused(err: BaseException) -> bool:
    """Whether a connection failure was a refusal, whatever an SDK's transport calls it (the
    aiohttp transport of the openai/anthropic SDKs reports a refused connection as a timeout)."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return False
        if (
            isinstance(seen, ConnectionRefusedError)
            or type(seen).__name__ == "ClientConnectorError"
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to call a provider: the identity of one reusable client."""

    provider: str
    api_style: str  # openai | anthropic | openai_compatible | ollama
    base_url: str
    api_key: str = field(repr=False)


class ProviderAdapter(Protocol):
    """One provider client, bound to one Endpoint and reused across requests."""

    def stream(self, call: ChatCall) -> AsyncGenerator[Delta | Finish, None]:
        """Deltas, then exactly one Finish; raises ProviderError. Closing the iterator early
        (aclose, or cancellation) closes the upstream HTTP stream."""
        ...

    async def complete(self, call: ChatCall) -> Completion:
        """The whole answer in one upstream call (the lean path for Generate)."""
        ...

    async def list_models(self) -> list[ModelInfo]:
        """The provider's live model list for this key (also the cheap connection check)."""
        ...

    async def aclose(self) -> None: ...
