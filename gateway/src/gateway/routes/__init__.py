"""Every router of the gateway, gathered in one place."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.routes import billing, images, multimodal, ops, settings, text

TEXT_PROXY_PREFIX = "/api/text-proxy"
# The first API's name for the text proxy, kept for older clients.
LEGACY_TEXT_PROXY_PREFIX = "/api/llm-proxy"


def include_routers(app: FastAPI) -> None:
    app.include_router(ops.router)
    app.include_router(text.build_router(TEXT_PROXY_PREFIX))
    app.include_router(text.build_router(LEGACY_TEXT_PROXY_PREFIX, deprecated=True))
    multimodal.include_routers(app)
    images.include_routers(app)
    app.include_router(settings.router)
    app.include_router(billing.balance_router)
    app.include_router(billing.usage_router)
