"""Probes and metrics for operators: /healthz, /readyz, /metrics. No authentication."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import Backends
from gateway.metrics import CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="The process is alive")
async def get_health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Every configured gRPC backend answers SERVING (else 503, naming the others)",
    responses={503: {"description": "Some backends are not serving"}},
)
async def get_readiness(backends: Backends) -> Response:
    statuses = await backends.readiness()
    not_serving = sorted(name for name, status in statuses.items() if status != "SERVING")
    body: dict[str, Any] = {
        "status": "unavailable" if not_serving else "ready",
        "backends": statuses,
    }
    if not_serving:
        body["not_serving"] = not_serving
    return Response(
        orjson.dumps(body), status_code=503 if not_serving else 200, media_type="application/json"
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def get_metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
