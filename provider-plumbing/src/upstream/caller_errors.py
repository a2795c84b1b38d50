"""What a model service's caller is told about an upstream failure: a svc_common ServiceError
(its gRPC status and reason) whose message says what to change and never carries a key."""

from __future__ import annotations

from svc_common.errors import (
    PROVIDER_AUTH_FAILED,
    UPSTREAM_ERROR,
    UPSTREAM_RATE_LIMITED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNAVAILABLE,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from upstream.attempts import Route
from upstream.failures import Failure, ProviderError

__all__ = ["service_error"]


def service_error(err: ProviderError, route: Route, mode: str, backend_type: str) -> ServiceError:
    """The caller's error for `err` on `route`, in `mode` (member | byok), for the settings tab
    of `backend_type` (text | multimodal | image)."""
    provider = route.provider
    f = err.failure
    if f is Failure.AUTH:
        if mode == "byok":
            hint = f"check the {provider} API key saved in your {backend_type} settings"
        else:
            hint = f"the operator must check the platform's {provider} API key"
        return FailedPrecondition(
            f"{provider} rejected the API key (HTTP {err.status}): {hint}",
            reason=PROVIDER_AUTH_FAILED,
        )
    if f is Failure.RATE_LIMITED:
        when = f"; retry after {err.retry_after:g}s" if err.retry_after is not None else ""
        return ResourceExhausted(
            f"{provider} is rate limiting requests{when}",
            reason=UPSTREAM_RATE_LIMITED,
            retry_after=err.retry_after,
        )
    if f is Failure.UNAVAILABLE:
        return Unavailable(
            f"{provider} is unavailable ({err.detail}); try again later",
            reason=UPSTREAM_UNAVAILABLE,
            retry_after=err.retry_after,
        )
    if f is Failure.ERROR:
        return Unavailable(f"{provider} failed ({err.detail})", reason=UPSTREAM_ERROR)
    if f is Failure.TIMEOUT:
        return DeadlineExceeded(f"{provider} timed out: {err.detail}", reason=UPSTREAM_TIMEOUT)
    if f is Failure.BLOCKED:  # a redirect, or an address not allowed: the base URL must change
        return FailedPrecondition(
            f"the {provider} base URL cannot be used: {err.detail}",
            reason=UPSTREAM_ERROR,
            param=err.param,
        )
    return InvalidArgument(
        f"{provider} rejected the request for model {route.model!r}: {err.detail}",
        param=err.param,
    )
