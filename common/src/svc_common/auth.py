"""Service identity and user identity on gRPC calls.

A service token is `<service name>.<HMAC-SHA256(secret, name)>`. Services that accept calls hold
the secret and so can tell which service is calling; a caller holds only its own token (the
gateway never gets the secret, so it cannot pass itself off as a model service). The end user's
identity travels beside it in metadata, set by the trusted caller, never in a request body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

AUTHORIZATION = "authorization"
USER_ID = "x-user-id"
USER_MEMBER = "x-user-member"
REQUEST_ID = "x-request-id"

# The services that may receive a user's decrypted key (settings-svc ResolveConfig).
MODEL_SERVICES = frozenset({"text-svc", "multimodal-svc", "image-svc"})

_UNAUTHENTICATED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def mint_service_token(secret: str, service: str) -> str:
    mac = hmac.new(secret.encode(), b"service:" + service.encode(), hashlib.sha256).digest()
    return f"{service}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


class ServiceTokenVerifier:
    """Checks service tokens; remembers the ones already verified (there are only a few)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._known: dict[str, str] = {}

    def verify(self, token: str) -> str | None:
        known = self._known.get(token)
        if known is not None:
            return known
        service, _, _ = token.partition(".")
        if not service or not hmac.compare_digest(mint_service_token(self._secret, service), token):
            return None
        if len(self._known) < 1024:
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


def caller_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> Caller:
    service = user = request_id = ""
    member = False
    for key, value in metadata or ():
        if key == AUTHORIZATION:
            token = value[7:] if value.startswith("Bearer ") else value
            service = token.partition(".")[0]
        elif key == USER_ID:
            user = value
        elif key == USER_MEMBER:
            member = value == "1"
        elif key == REQUEST_ID:
            request_id = value
    return Caller(service=service, user_id=user, is_member=member, request_id=request_id)


def caller(context: grpc.aio.ServicerContext) -> Caller:
    """The verified caller of the current RPC (the server has checked the token: grpc_server)."""
    return caller_from_metadata(context.invocation_metadata())


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
    """Which calls may proceed: a valid service token, from an allowed service when the server
    names some. Health checks and reflection need none (`exempt`)."""

    def __init__(self, secret: str, allowed_services: frozenset[str] | None = None) -> None:
        self._verifier = ServiceTokenVerifier(secret)
        self._allowed = allowed_services

    @staticmethod
    def exempt(method: str) -> bool:
        return method.startswith(_UNAUTHENTICATED_METHODS)

    def denial(
        self, metadata: Sequence[tuple[str, Any]] | None
    ) -> tuple[grpc.StatusCode, str] | None:
        """Why a call with this metadata is refused; None when it may proceed."""
        token = ""
        for key, value in metadata or ():
            if key == AUTHORIZATION:
                token = value[7:] if value.startswith("Bearer ") else value
                break
        service = self._verifier.verify(token) if token else None
        if service is None:
            return grpc.StatusCode.UNAUTHENTICATED, "a valid service token is required"
        if self._allowed is not None and service not in self._allowed:
            return grpc.StatusCode.PERMISSION_DENIED, f"service {service!r} may not call this"
        return None
