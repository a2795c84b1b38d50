"""Channels spread calls over every address of their target (svc_common.grpc_client): a second
replica takes calls from a caller that was already connected, and when one replica stops the
calls go on to the others."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from pydantic import SecretStr

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.environment import ServiceSettings
from svc_common.grpc_client import channel
from svc_common.grpc_server import GrpcService, build_server

SECRET = "common-test-service-secret-0123456789abcdef"
GATEWAY = mint_service_token(SECRET, "gateway")


class Replica(text_pb2_grpc.TextServiceServicer):
    """Answers Generate (a call that is never retried on UNAVAILABLE) with its own name."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def Generate(
        self, request: text_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.GenerateResponse:
        return text_pb2.GenerateResponse(id=self.name)


async def _start(name: str) -> GrpcService:
    settings = ServiceSettings(environment="test", service_token_secret=SecretStr(SECRET))
    names = [text_pb2.DESCRIPTOR.services_by_name["TextService"].full_name]
    server, port, health = build_server(settings, names)
    text_pb2_grpc.add_TextServiceServicer_to_server(Replica(name), server)
    service = GrpcService(server, port, health, names)
    await service.start()
    return service


@pytest.fixture
async def replicas() -> AsyncIterator[list[GrpcService]]:
    started = [await _start("replica-a"), await _start("replica-b")]
    yield started
    for service in started:
        await service.stop(None)


async def _answers(stub: text_pb2_grpc.TextServiceStub, calls: int) -> Counter[str]:
    metadata = outgoing_metadata(GATEWAY, user_id="alice", is_member=True, request_id="r")
    answered: Counter[str] = Counter()
    for _ in range(calls):
        reply = await stub.Generate(text_pb2.GenerateRequest(), metadata=metadata, timeout=5)
        answered[reply.id] += 1
    return answered


async def test_calls_spread_over_both_replicas_and_go_on_when_one_stops(
    replicas: list[GrpcService],
) -> None:
    a, b = replicas
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    async with channel(target) as chan:
        # Connected to both before counting: round robin picks among ready replicas only.
        await chan.channel_ready()
        stub = text_pb2_grpc.TextServiceStub(chan)
        await _answers(stub, 2)
        spread = await _answers(stub, 40)
        # pick_first would answer all 40 from one replica.
        assert set(spread) == {"replica-a", "replica-b"}, spread
        assert min(spread.values()) >= 15, spread

        # A replica stopped (as a pod replaced in a rollout: GOAWAY, then its port closes):
        # every later call is answered by the other, none fails.
        await a.stop(1.0)
        after = await _answers(stub, 20)
        assert after == Counter({"replica-b": 20}), after
