"""Red-team tests of identity between services, against the real settings-svc and billing-svc: a
service token proves one identity, and a second metadata entry cannot add another."""

from __future__ import annotations

import secrets

import grpc
import httpx
import pytest
from harness import USER_OPENAI_KEY, Platform

from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from svc_common.auth import mint_service_token, outgoing_metadata


async def store_byok_key(platform: Platform, user: str) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        response = await client.put(
            "/api/settings/llm/text",
            json={"provider": "openai", "model": "gpt-4o", "mode": "byok"},
            headers=platform.auth(user),
        )
        assert response.status_code == 200, response.text
        response = await client.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth(user),
        )
        assert response.status_code == 200, response.text


async def test_the_gateways_token_cannot_add_a_text_svc_identity(platform: Platform) -> None:
    await store_byok_key(platform, "victim")
    gateway = mint_service_token(platform.service_secret, "gateway")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.settings_port}") as channel:
        stub = settings_pb2_grpc.SettingsServiceStub(channel)
        request = settings_pb2.ResolveConfigRequest(backend_type=common_pb2.BACKEND_TYPE_TEXT)
        # The gateway's own identity is refused: it never sees a decrypted key.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ResolveConfig(
                request, metadata=outgoing_metadata(gateway, user_id="victim"), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # A second, unverifiable authorization entry naming text-svc changes nothing.
        metadata = (
            ("authorization", f"Bearer {gateway}"),
            ("authorization", "Bearer text-svc.x"),
            ("x-user-id", "victim"),
            ("x-user-member", "0"),
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            reply = await stub.ResolveConfig(request, metadata=metadata, timeout=10)
            assert USER_OPENAI_KEY not in str(reply)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert USER_OPENAI_KEY not in (caught.value.details() or "")


async def test_the_gateways_token_cannot_add_an_operator_identity(platform: Platform) -> None:
    await platform.grant("mallory", 1_000)
    gateway = mint_service_token(platform.service_secret, "gateway")
    text_svc = mint_service_token(platform.service_secret, "text-svc")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.billing_port}") as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        grant = billing_pb2.GrantRequest(
            user_id="mallory", amount_micros=10**12, grant_id=secrets.token_hex(8), reason="free"
        )
        metadata = (("authorization", f"Bearer {gateway}"), ("authorization", "Bearer operator.x"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Grant(grant, metadata=metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        balance = await stub.GetBalance(
            billing_pb2.GetBalanceRequest(),
            metadata=outgoing_metadata(text_svc, user_id="mallory"),
            timeout=10,
        )
    assert balance.balance_micros == 1_000


async def test_a_repeated_user_id_is_refused(platform: Platform) -> None:
    await platform.grant("alice", 5_000)
    text_svc = mint_service_token(platform.service_secret, "text-svc")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.billing_port}") as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        metadata = (*outgoing_metadata(text_svc, user_id="bob"), ("x-user-id", "alice"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetBalance(billing_pb2.GetBalanceRequest(), metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
