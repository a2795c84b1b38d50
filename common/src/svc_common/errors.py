"""Errors in one place per direction.

Services raise ServiceError subclasses; the server (svc_common.grpc_server, via `abort_with`)
turns them into a gRPC status whose details carry a google.rpc.ErrorInfo (the reason, e.g.
INSUFFICIENT_CREDITS) and, where known, a google.rpc.RetryInfo. Clients turn grpc.aio.AioRpcError
back into RemoteError with the same facts; the gateway maps those to HTTP (gateway.errors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)

DOMAIN = "model-platform"

# Every ErrorInfo reason a service sends, declared here and nowhere else: the gateway gives each
# one its own OpenAI-style `code` (and, where the product says so, its own HTTP status), and a
# test holds it to every name in REASONS. A status without one of these carries its code's name.
INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
PROVIDER_AUTH_FAILED = "PROVIDER_AUTH_FAILED"
UPSTREAM_ERROR = "UPSTREAM_ERROR"
UPSTREAM_RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
VERSION_CONFLICT = "VERSION_CONFLICT"
# A BYOK config without a usable key of its provider (none set, or one for another provider).
API_KEY_MISSING = "API_KEY_MISSING"
# The stored key no longer decrypts (e.g. its master key was retired): set it again.
API_KEY_UNREADABLE = "API_KEY_UNREADABLE"
MEMBERSHIP_REQUIRED = "MEMBERSHIP_REQUIRED"
MEMBER_MODE_NOT_OFFERED = "MEMBER_MODE_NOT_OFFERED"
# No provider is offered for the backend type, or the config's provider no longer is.
PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"

REASONS: frozenset[str] = frozenset(
    {
        INSUFFICIENT_CREDITS,
        PROVIDER_AUTH_FAILED,
        UPSTREAM_ERROR,
        UPSTREAM_RATE_LIMITED,
        UPSTREAM_UNAVAILABLE,
        UPSTREAM_TIMEOUT,
        VERSION_CONFLICT,
        API_KEY_MISSING,
        API_KEY_UNREADABLE,
        MEMBERSHIP_REQUIRED,
        MEMBER_MODE_NOT_OFFERED,
        PROVIDER_UNAVAILABLE,
    }
)


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = ""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.retry_after = retry_after
        self.param = param


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class Conflict(ServiceError):
    code = grpc.StatusCode.ABORTED
    reason = VERSION_CONFLICT


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class InsufficientCredits(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = INSUFFICIENT_CREDITS


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(ServiceError):
    code = grpc.StatusCode.INTERNAL


def to_status(err: ServiceError) -> grpc.Status:
    status = status_pb2.Status(code=err.code.value[0], message=err.message)
    info = error_details_pb2.ErrorInfo(reason=err.reason or err.code.name, domain=DOMAIN)
    if err.param:
        info.metadata["param"] = err.param
    status.details.add().Pack(info)
    if err.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(err.retry_after * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    converted: grpc.Status = rpc_status.to_status(status)  # grpc_status ships no types
    return converted


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], err: BaseException, method: str
) -> None:
    """End the RPC for an exception its handler raised: ServiceError → its rich status, anything
    unexpected → INTERNAL, logged once. Aborts (and misuse of the context) pass through."""
    if isinstance(err, ServiceError):
        await context.abort_with_status(to_status(err))
    if isinstance(err, grpc.aio.AbortError | grpc.aio.UsageError):
        raise err
    log.error("unhandled error in %s", method, exc_info=err)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


@dataclass(slots=True)
class RemoteError(Exception):
    """A failed call to another service, with the facts its status carried."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    retry_after: float | None = None
    param: str | None = None

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def from_rpc_error(err: grpc.aio.AioRpcError) -> RemoteError:
    remote = RemoteError(code=err.code(), message=err.details() or "")
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                remote.reason = info.reason
                remote.param = info.metadata.get("param")
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                remote.retry_after = retry.retry_delay.ToMilliseconds() / 1000
    return remote


def reraise(err: RemoteError) -> ServiceError:
    """The same failure as a ServiceError, to pass a downstream error on to our own caller."""
    cls = _BY_CODE.get(err.code, Internal)
    if cls is Internal and err.code != grpc.StatusCode.INTERNAL:
        return Unavailable(err.message or err.code.name, reason=err.reason or UPSTREAM_UNAVAILABLE)
    return cls(err.message, reason=err.reason or None, retry_after=err.retry_after, param=err.param)


_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INTERNAL: Internal,
}
