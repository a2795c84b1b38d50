"""What metrics cost per gRPC call (svc_common.metrics): `python -m bench.grpc_metrics`.

Prints the bookkeeping alone (a method's begin/end, as the server guard and the channel do per
call) and whole unary calls to a guarded server on a plain channel, a metered channel
(svc_common.grpc_client.channel) and a channel with an equivalent grpc.aio client interceptor.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from pydantic import SecretStr

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common import grpc_client, metrics
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.environment import ServiceSettings
from svc_common.grpc_server import GrpcService, build_server

SECRET = "bench-metrics-secret-0123456789abcdef"
CALLS = 3000


class _Models(text_pb2_grpc.TextServiceServicer):
    async def ListModels(self, request: Any, context: Any) -> text_pb2.ListModelsResponse:
        return text_pb2.ListModelsResponse()


class _CountingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """The same bookkeeping as an interceptor would do it (for comparison)."""

    def __init__(self) -> None:
        self._meter = metrics.client_method("/bench.Interceptor/ListModels", "unary_unary")

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        started = self._meter.begin()
        call = await continuation(details, request)
        call.add_done_callback(self._meter.ended(started))
        return call


def bookkeeping_ns() -> float:
    meter = metrics.server_method("/bench.Bookkeeping/Call", "unary_unary")
    n = 200_000
    start = time.perf_counter_ns()
    for _ in range(n):
        meter.end(grpc.StatusCode.OK, meter.begin())
    return (time.perf_counter_ns() - start) / n


async def per_call_us(channel: grpc.aio.Channel) -> float:
    stub = text_pb2_grpc.TextServiceStub(channel)
    metadata = outgoing_metadata(mint_service_token(SECRET, "gateway"), user_id="bench")
    request = text_pb2.ListModelsRequest()
    for _ in range(200):  # warm up
        await stub.ListModels(request, metadata=metadata, timeout=5)
    start = time.perf_counter()
    for _ in range(CALLS):
        await stub.ListModels(request, metadata=metadata, timeout=5)
    return (time.perf_counter() - start) / CALLS * 1e6


async def main() -> None:
    settings = ServiceSettings(environment="test", service_token_secret=SecretStr(SECRET))
    name = "text.v1.TextService"
    server, port, health = build_server(settings, [name])
    text_pb2_grpc.add_TextServiceServicer_to_server(_Models(), server)
    service = GrpcService(server, port, health, [name])
    await service.start()
    target = f"127.0.0.1:{port}"
    options = grpc_client.CHANNEL_OPTIONS
    try:
        results = {}
        for _ in range(2):  # twice, alternating, so neither order nor warm-up decides
            for label, channel in (
                ("plain channel", grpc.aio.insecure_channel(target, options=options)),
                ("metered channel", grpc_client.channel(target)),
                (
                    "interceptor",
                    grpc.aio.insecure_channel(
                        target, options=options, interceptors=[_CountingInterceptor()]
                    ),
                ),
            ):
                results[label] = min(results.get(label, 1e9), await per_call_us(channel))
                await channel.close()
    finally:
        await service.stop(0)
    print(f"bookkeeping per call (begin + end): {bookkeeping_ns():.0f} ns")  # noqa: T201
    for label, us in results.items():
        print(f"{label:>16}: {us:6.1f} µs per unary call (server metrics on)")  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main())
