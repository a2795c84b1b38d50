"""The identity a handler sees is exactly the one the server verified (svc_common.auth,
svc_common.grpc_server): one reading of the metadata, and no call that repeats an identity entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from pydantic import SecretStr

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import (
    CallRefused,
    ServiceAuth,
    caller,
    mint_service_token,
    outgoing_metadata,
)
from svc_common.environment import ServiceSettings
from svc_common.errors import Unauthenticated
from svc_common.grpc_server import GrpcService, build_server

SECRET = "common-test-service-secret-0123456789abcdef"
GATEWAY = mint_service_token(SECRET, "gateway")
TEXT_SVC = mint_service_token(SECRET, "text-svc")


class WhoAmI(text_pb2_grpc.TextServiceServicer):
    """Answers with the caller its handler was given: service, user, member flag, request id."""

    async def ListModels(
        self, request: text_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.ListModelsResponse:
        who = caller(context)
        return text_pb2.ListModelsResponse(
            models=[
                text_pb2.Model(id=who.service, provider=who.user_id, owned_by=who.request_id),
                text_pb2.Model(id="member" if who.is_member else "byok"),
            ]
        )


@dataclass
class Served:
    stub: text_pb2_grpc.TextServiceStub


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    settings = ServiceSettings(environment="test", service_token_secret=SecretStr(SECRET))
    names = [text_pb2.DESCRIPTOR.services_by_name["TextService"].full_name]
    server, port, health = build_server(settings, names)
    text_pb2_grpc.add_TextServiceServicer_to_server(WhoAmI(), server)
    service = GrpcService(server, port, health, names)
    await service.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Served(text_pb2_grpc.TextServiceStub(channel))
    await service.stop(None)


async def who_am_i(served: Served, metadata: tuple[tuple[str, str], ...]) -> list[str]:
    reply = await served.stub.ListModels(text_pb2.ListModelsRequest(), metadata=metadata, timeout=5)
    first, second = reply.models
    return [first.id, first.provider, first.owned_by, second.id]


async def test_the_handler_sees_the_verified_caller(served: Served) -> None:
    metadata = outgoing_metadata(GATEWAY, user_id="alice", is_member=True, request_id="r-1")
    assert await who_am_i(served, metadata) == ["gateway", "alice", "r-1", "member"]


async def test_a_second_authorization_entry_is_refused(served: Served) -> None:
    metadata = (("authorization", f"Bearer {GATEWAY}"), ("authorization", "Bearer text-svc.x"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await who_am_i(served, (*metadata, ("x-user-id", "alice")))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("key", ["x-user-id", "x-user-member", "x-request-id"])
async def test_a_repeated_identity_entry_is_refused(served: Served, key: str) -> None:
    metadata = (*outgoing_metadata(TEXT_SVC, user_id="alice", request_id="r-1"), (key, "1"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await who_am_i(served, metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert key in (caught.value.details() or "")


def test_authenticate_names_the_service_whose_token_was_verified() -> None:
    auth = ServiceAuth(SECRET)
    who = auth.authenticate(outgoing_metadata(GATEWAY, user_id="bob", request_id="r"))
    assert (who.service, who.user_id, who.is_member, who.request_id) == (
        "gateway",
        "bob",
        False,
        "r",
    )
    for forged in ("text-svc.x", "text-svc." + GATEWAY.partition(".")[2], ""):
        with pytest.raises(CallRefused):
            auth.authenticate([("authorization", f"Bearer {forged}")])


def test_allowed_services_are_enforced_on_the_verified_service() -> None:
    auth = ServiceAuth(SECRET, frozenset({"text-svc"}))
    with pytest.raises(CallRefused) as caught:
        auth.authenticate(outgoing_metadata(GATEWAY))
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert auth.authenticate(outgoing_metadata(TEXT_SVC)).service == "text-svc"


async def test_caller_refuses_a_context_the_server_did_not_verify() -> None:
    class Unverified:
        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return outgoing_metadata(TEXT_SVC, user_id="alice")

    with pytest.raises(Unauthenticated):
        caller(Unverified())  # type: ignore[arg-type]
