"""Service identity and user identity on gRPC calls.

A service token is `<service name>.<HMAC-SHA256(secret, name)>`. Services that accept calls hold
the secret and so can tell which service is calling; a caller holds only its own token (the
gateway never gets the secret, so it cannot pass itself off as a model service). The end user's
identity travels beside it in metadata, set by the trusted caller, never in a request body.

The metadata of a call is read once, by `ServiceAuth.authenticate` in the server's guard
(svc_common.grpc_server); the handler sees exactly that verified `Caller` through `caller()`.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from cachetools import LRUCache

AUTHORIZATION = "authorization"
USER_ID = "x-user-id"
USER_MEMBER = "x-user-member"
REQUEST_ID = "x-request-id"

# Each of these names one fact about the call; a second entry could say something else than the
# one that was checked, so a call that repeats any of them is refused.
_IDENTITY_KEYS = (AUTHORIZATION, USER_ID, USER_MEMBER, REQUEST_ID)

# The services that may receive a user's decrypted key (settings-svc ResolveConfig).
MODEL_SERVICES = frozenset({"text-svc", "multimodal-svc", "image-svc"})

_UNAUTHENTICATED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def mint_service_token(secret: str, service: str) -> str:
    mac = hmac.new(secret.encode(), b"service:" + service.encode(), hashlib.sha256).digest()
    return f"{service}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


class ServiceTokenVerifier:
    """Checks service tokens; remembers the ones already verified (there are only a few; a
    flood of distinct valid tokens evicts the least recently used)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._known: LRUCache[str, str] = LRUCache(maxsize=1024)

    def verify(self, token: str) -> str | None:
        known = self._known.get(token)
        if known is not None:
            return known
        service, _, _ = token.partition(".")
        if not service or not hmac.compare_digest(mint_service_token(self._secret, service), token):
            return None
        self._known[token] = service
        return service


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the service that presented the token, and the end user it acts for."""

    service: str
    user_id: str
    is_member: bool
    request_id: str

    def require_user(self) -> str:
        from svc_common.errors import Unauthenticated

        if not self.user_id:
            raise Unauthenticated("this call acts for a user: send x-user-id metadata")
        return self.user_id


class CallRefused(Exception):
    """The call's metadata does not identify a caller that may proceed."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


# The verified caller of the RPC being served, with the servicer context it was verified for.
# grpc.aio runs every RPC in its own task (with its own copy of the context), so a value set by
# one call's guard is never seen by another call.
_verified: contextvars.ContextVar[tuple[object, Caller]] = contextvars.ContextVar("verified_caller")


def bind_caller(context: object, who: Caller) -> None:
    """Called by the server's guard, once per call, after `ServiceAuth.authenticate`."""
    _verified.set((context, who))


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
    """The verified caller of the current RPC: exactly what the server's guard checked.

    Raises Unauthenticated when this context was not verified (a handler served outside
    svc_common.grpc_server), rather than trusting its metadata.
    """
    bound = _verified.get(None)
    if bound is None or bound[0] is not context:
        from svc_common.errors import Unauthenticated

        raise Unauthenticated("this call was not authenticated")
    return bound[1]


def outgoing_metadata(
    service_token: str,
    *,
    user_id: str = "",
    is_member: bool = False,
    request_id: str = "",
) -> tuple[tuple[str, str], ...]:
    md: list[tuple[str, str]] = [(AUTHORIZATION, f"Bearer {service_token}")]
    if user_id:
        md.append((USER_ID, user_id))
        md.append((USER_MEMBER, "1" if is_member else "0"))
    if request_id:
        md.append((REQUEST_ID, request_id))
    return tuple(md)


def forward_metadata(service_token: str, who: Caller) -> tuple[tuple[str, str], ...]:
    """Metadata to call another service on behalf of the same user and request."""
    return outgoing_metadata(
        service_token, user_id=who.user_id, is_member=who.is_member, request_id=who.request_id
    )


class ServiceAuth:
    """Which calls may proceed, and who makes them: a valid service token, from an allowed
    service when the server names some. Health checks and reflection need none (`exempt`)."""

    def __init__(self, secret: str, allowed_services: frozenset[str] | None = None) -> None:
        self._verifier = ServiceTokenVerifier(secret)
        self._allowed = allowed_services

    @staticmethod
    def exempt(method: str) -> bool:
        return method.startswith(_UNAUTHENTICATED_METHODS)

    def authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Caller:
        """The one reading of a call's identity metadata; raises CallRefused when the call may
        not proceed. The Caller's service is the one whose token was verified."""
        found: dict[str, str] = {}
        for key, value in metadata or ():
            if key not in _IDENTITY_KEYS:
                continue
            if key in found:
                if key == AUTHORIZATION:
                    raise CallRefused(
                        grpc.StatusCode.UNAUTHENTICATED, "send exactly one authorization entry"
                    )
                raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"send {key} at most once")
            # Binary values (keys ending in -bin) are not identity keys; these are all str.
            found[key] = value if isinstance(value, str) else ""
        token = found.get(AUTHORIZATION, "")
        if token.startswith("Bearer "):
            token = token[7:]
        service = self._verifier.verify(token) if token else None
        if service is None:
            raise CallRefused(grpc.StatusCode.UNAUTHENTICATED, "a valid service token is required")
        if self._allowed is not None and service not in self._allowed:
            raise CallRefused(
                grpc.StatusCode.PERMISSION_DENIED, f"service {service!r} may not call this"
            )
        return Caller(
            service=service,
            user_id=found.get(USER_ID, ""),
            is_member=found.get(USER_MEMBER) == "1",
            request_id=found.get(REQUEST_ID, ""),
        )
