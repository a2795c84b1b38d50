"""Dependencies of the route handlers, as Annotated aliases.

FastAPI spends some microseconds per dependency per request, so each takes only the Request (no
sub-dependencies); the bearer scheme is documented in OpenAPI by gateway.app instead of by a
security dependency.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway import clients
from gateway.auth import TokenVerifier, User
from gateway.errors import ApiError
from gateway.middleware import request_id


async def get_backends(request: Request) -> clients.Backends:
    return request.app.state.backends


async def current_user(request: Request) -> User:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier.authenticate(request.headers.get("authorization"))


async def get_request_id(request: Request) -> str:
    return request_id(request.scope)


def _unconfigured(backend: str) -> ApiError:
    return ApiError(503, f"{backend} is not configured on this gateway", code="service_unavailable")


async def text_client(request: Request) -> clients.TextClient:
    client = request.app.state.backends.text
    if client is None:
        raise _unconfigured("text-svc")
    return client


async def multimodal_client(request: Request) -> clients.MultimodalClient:
    client = request.app.state.backends.multimodal
    if client is None:
        raise _unconfigured("multimodal-svc")
    return client


async def settings_client(request: Request) -> clients.SettingsClient:
    client = request.app.state.backends.settings
    if client is None:
        raise _unconfigured("settings-svc")
    return client


async def billing_client(request: Request) -> clients.BillingClient:
    client = request.app.state.backends.billing
    if client is None:
        raise _unconfigured("billing-svc")
    return client


CurrentUser = Annotated[User, Depends(current_user)]
RequestId = Annotated[str, Depends(get_request_id)]
Backends = Annotated[clients.Backends, Depends(get_backends)]
TextClient = Annotated[clients.TextClient, Depends(text_client)]
MultimodalClient = Annotated[clients.MultimodalClient, Depends(multimodal_client)]
SettingsClient = Annotated[clients.SettingsClient, Depends(settings_client)]
BillingClient = Annotated[clients.BillingClient, Depends(billing_client)]
