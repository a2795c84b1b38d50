"""Every service's metrics port (svc_common.metrics through svc_common.lifecycle): the calls a
server handled and the calls a channel made, per method and status, their latency and those in
flight; and no user id or key in any label."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common import grpc_client
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.environment import ServiceSettings
from svc_common.errors import InvalidArgument
from svc_common.grpc_server import GrpcService, build_server
from svc_common.lifecycle import Service

SECRET = "metrics-test-service-secret-0123456789abcdef"
GATEWAY = mint_service_token(SECRET, "gateway")
# Recognisable values a label must never carry.
PLANTED_USER = "planted-user-7f3a9c"
PLANTED_KEY = "sk-planted-key-4be1d2"
TEXT = "text.v1.TextService"


class Servicer(text_pb2_grpc.TextServiceServicer):
    async def ListModels(
        self, request: text_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.ListModelsResponse:
        return text_pb2.ListModelsResponse(models=[text_pb2.Model(id="m")])

    async def CheckStatus(
        self, request: text_pb2.CheckStatusRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.CheckStatusResponse:
        raise InvalidArgument(f"the key {PLANTED_KEY} is wrong")

    async def GenerateStream(
        self, request: text_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[text_pb2.GenerateStreamResponse]:
        for _ in range(3):
            yield text_pb2.GenerateStreamResponse()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> tuple[str, Samples]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    settings = ServiceSettings(
        environment="test", service_token_secret=SecretStr(SECRET), metrics_port=0
    )
    server, port, health = build_server(settings, [TEXT])
    text_pb2_grpc.add_TextServiceServicer_to_server(Servicer(), server)
    service = Service(settings, GrpcService(server, port, health, [TEXT]))
    await service.start()
    yield service
    await service.stop(0)


async def test_the_metrics_port_counts_calls_per_method_and_status_on_both_sides(
    service: Service,
) -> None:
    assert service.metrics_port
    _, before = await scrape(service.metrics_port)
    metadata = outgoing_metadata(GATEWAY, user_id=PLANTED_USER, is_member=True, request_id="r-1")
    channel = grpc_client.channel(f"127.0.0.1:{service.port}")
    stub = text_pb2_grpc.TextServiceStub(channel)
    await stub.ListModels(text_pb2.ListModelsRequest(), metadata=metadata, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CheckStatus(text_pb2.CheckStatusRequest(), metadata=metadata, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await stub.ListModels(text_pb2.ListModelsRequest(), timeout=5)
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    streamed = [
        m
        async for m in stub.GenerateStream(
            text_pb2.GenerateRequest(model=PLANTED_KEY), metadata=metadata, timeout=5
        )
    ]
    assert len(streamed) == 3
    await channel.close()

    text, after = await scrape(service.metrics_port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    unary = {"grpc_type": "unary", "grpc_service": TEXT}
    stream = {"grpc_type": "server_stream", "grpc_service": TEXT, "grpc_method": "GenerateStream"}
    for side in ("server", "client"):
        handled = f"grpc_{side}_handled_total"
        assert delta(handled, **unary, grpc_method="ListModels", grpc_code="OK") == 1
        assert delta(handled, **unary, grpc_method="ListModels", grpc_code="UNAUTHENTICATED") == 1
        assert delta(handled, **unary, grpc_method="CheckStatus", grpc_code="INVALID_ARGUMENT") == 1
        assert delta(handled, **stream, grpc_code="OK") == 1
        seconds = f"grpc_{side}_handling_seconds_count"
        assert delta(seconds, **unary, grpc_method="ListModels") == 2
        assert delta(seconds, **stream) == 1
        # Every call has ended: none left in flight.
        assert value(after, f"grpc_{side}_in_flight", **unary, grpc_method="ListModels") == 0
        assert value(after, f"grpc_{side}_in_flight", **stream) == 0

    assert PLANTED_USER not in text and PLANTED_KEY not in text
    assert "r-1" not in {v for (_, labels) in after for (_, v) in labels}


async def test_no_metrics_port_unless_configured() -> None:
    settings = ServiceSettings(environment="test", service_token_secret=SecretStr(SECRET))
    server, port, health = build_server(settings, [TEXT])
    service = Service(settings, GrpcService(server, port, health, [TEXT]))
    await service.start()
    try:
        assert service.metrics_port is None
    finally:
        await service.stop(0)
