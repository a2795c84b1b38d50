"""Billing routes, probes, metrics and the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from grpc_health.v1 import health_pb2

from gateway.routes.billing import credits, parse_time
from grpc_stubs.common.v1 import common_pb2

from .conftest import Backends


async def test_balance(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/billing/balance")
    assert response.status_code == 200
    assert response.json() == {
        "balance_micros": 4_250_000,
        "held_micros": 1_500,
        "balance": "4.250000",
    }


@pytest.mark.parametrize(
    ("micros", "text"), [(0, "0.000000"), (1, "0.000001"), (12_345_678_901, "12345.678901")]
)
def test_credits_are_exact_decimals(micros: int, text: str) -> None:
    assert credits(micros) == text


async def test_usage_totals(gateway: httpx.AsyncClient, backends: Backends) -> None:
    response = await gateway.get(
        "/api/usage", params={"from": "2025-01-01T00:00:00Z", "to": "1767225600"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["totals"][0] == {
        "backend_type": "text",
        "provider": "openai",
        "model": "gpt-test",
        "mode": "member",
        "requests": 2,
        "input_tokens": 20,
        "output_tokens": 6,
        "images": 0,
        "cost_micros": 300,
    }
    fields = ("requests", "input_tokens", "output_tokens", "images", "cost_micros")
    assert {
        name: tuple(totals[f] for f in fields) for name, totals in body["by_backend_type"].items()
    } == {
        "text": (3, 25, 11, 0, 300),
        "multimodal": (0, 0, 0, 0, 0),
        "image": (1, 0, 0, 1, 40_000),
    }
    request = backends.billing.usage_requests[-1]
    assert request.from_unix == int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    assert request.to_unix == 1_767_225_600
    assert request.backend_type == common_pb2.BACKEND_TYPE_UNSPECIFIED

    await gateway.get("/api/usage", params={"backend_type": "image"})
    assert backends.billing.usage_requests[-1].backend_type == common_pb2.BACKEND_TYPE_IMAGE


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-13-01"}, "to"),
        ({"from": "200", "to": "100"}, "from"),
        ({"backend_type": "video"}, "backend_type"),
    ],
)
async def test_bad_usage_queries_are_400(
    gateway: httpx.AsyncClient, params: dict, param: str
) -> None:
    response = await gateway.get("/api/usage", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_parse_time() -> None:
    assert parse_time(None, "from") == 0
    assert parse_time("1700000000", "from") == 1_700_000_000
    assert parse_time("2023-11-14T22:13:20", "from") == 1_700_000_000
    assert parse_time("2023-11-15T00:13:20+02:00", "from") == 1_700_000_000


async def test_healthz_needs_nothing(start_gateway) -> None:
    async with start_gateway() as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_follows_backend_health(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    ready = await gateway.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "backends": {"text-svc": "SERVING", "settings-svc": "SERVING", "billing-svc": "SERVING"},
    }
    await backends.service.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    not_ready = await gateway.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["not_serving"] == ["billing-svc", "settings-svc", "text-svc"]


async def test_readyz_names_an_unreachable_backend(start_gateway, backends: Backends) -> None:
    async with (
        start_gateway(backends.target, billing_target="127.0.0.1:9", readiness_deadline_s=1) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["not_serving"] == ["billing-svc"]
    assert body["backends"]["billing-svc"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    assert body["backends"]["text-svc"] == "SERVING"


async def test_metrics_count_requests_by_route_and_status(gateway: httpx.AsyncClient) -> None:
    await gateway.post("/api/text-proxy/v1/chat/completions", json={"messages": []})
    await gateway.post(
        "/api/text-proxy/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    await gateway.get("/api/settings/llm/image")
    response = await gateway.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    chat = 'method="POST",route="/api/text-proxy/v1/chat/completions"'
    assert f'gateway_http_requests_total{{{chat},status="400"}} 1.0' in text
    assert f'gateway_http_requests_total{{{chat},status="200"}} 1.0' in text
    # Route templates, not raw paths.
    assert 'route="/api/settings/llm/{backend_type}",status="200"' in text
    assert f"gateway_http_request_duration_seconds_count{{{chat}}} 2.0" in text
    assert "gateway_streams_in_flight 0.0" in text


async def test_openapi_describes_the_api(gateway: httpx.AsyncClient) -> None:
    schema = (await gateway.get("/openapi.json")).json()
    chat = schema["paths"]["/api/text-proxy/v1/chat/completions"]["post"]
    body_schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert "messages" in schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert "ChatMessage" in schema["components"]["schemas"]
    assert chat.get("deprecated") is not True
    assert schema["paths"]["/api/llm-proxy/v1/chat/completions"]["post"]["deprecated"] is True
    assert "/api/settings/llm/{backend_type}/api-key" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert chat["security"] == [{"bearer": []}]
    docs = await gateway.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_app_with_tracing_serves_streams(
    start_gateway, backends: Backends, token: str
) -> None:
    async with (
        start_gateway(backends.target, tracing=True) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}) as client,
    ):
        response = await client.post(
            "/api/text-proxy/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}], "stream": True},
        )
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    _, who = backends.text.requests[-1]
    assert who.user_id == "alice"
