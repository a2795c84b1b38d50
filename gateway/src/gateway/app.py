"""create_app(settings): the gateway's FastAPI application, wired and ready to serve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.middleware.cors import CORSMiddleware

from gateway import schemas
from gateway.auth import TokenVerifier
from gateway.clients import Backends
from gateway.console import install_console
from gateway.environment import Settings
from gateway.errors import install_error_handlers
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.middleware import BodyLimitMiddleware, RequestIdMiddleware
from gateway.routes import include_routers
from gateway.routes.multimodal import MULTIMODAL_PREFIXES

# Bodies the handlers validate by hand, described in OpenAPI all the same.
_HAND_VALIDATED_BODIES: list[type[BaseModel]] = [
    schemas.ChatCompletionRequest,
    schemas.MultimodalChatCompletionRequest,
]


# What browser clients read off an answer: the request id to quote, the balance after a member
# request, and when to retry.
EXPOSED_HEADERS = ["x-request-id", "x-credits-remaining", "retry-after"]


def create_app(settings: Settings) -> FastAPI:
    """The app; its gRPC channels open at startup and close at shutdown (the lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = Backends(settings)
        try:
            yield
        finally:
            await app.state.backends.close()

    app = FastAPI(
        title="Model access gateway",
        summary="Text, multimodal and image models in member (credits) or BYOK mode",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.metrics = metrics = Metrics()

    install_error_handlers(app)
    include_routers(app)
    install_console(app, settings.console_dir)  # last: it takes only what the API did not
    # Last added runs first: the request id is set before anything can answer.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        by_prefix=dict.fromkeys(MULTIMODAL_PREFIXES, settings.multimodal_max_body_bytes),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_allowed_origins:
        # Outermost: a preflight is answered for every route before anything else runs, and
        # every answer (errors too) exposes the headers browser clients read.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    _complete_openapi(app)

    if settings.tracing_enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        from svc_common.telemetry import setup_tracing

        setup_tracing("gateway")
        # Per-message receive/send spans would cost a span per SSE chunk.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"]
        )
    return app


def _complete_openapi(app: FastAPI) -> None:
    """Adds what FastAPI cannot see: the hand-validated bodies and the bearer scheme."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            _, definitions = models_json_schema(
                [(model, "validation") for model in _HAND_VALIDATED_BODIES],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(definitions.get("$defs", {}))
            components["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A user JWT: sub = the user id, member = may use member mode",
                }
            }
            for path, operations in schema["paths"].items():
                if path.startswith("/api/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
