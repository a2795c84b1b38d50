"""Helpers for settings-svc tests (imported by tests; fixtures live in conftest.py)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import grpc

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from settings_svc.environment import Settings
from settings_svc.server import SettingsServer, create_server
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.errors import RemoteError, from_rpc_error

SERVICE_SECRET = "settings-test-service-secret"
TEXT = common_pb2.BACKEND_TYPE_TEXT
MULTIMODAL = common_pb2.BACKEND_TYPE_MULTIMODAL
IMAGE = common_pb2.BACKEND_TYPE_IMAGE
MEMBER = common_pb2.MODE_MEMBER
BYOK = common_pb2.MODE_BYOK


def new_master_key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[SettingsServer]:
    server = create_server(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


class Actor:
    """SettingsService as one calling service acting for one user: `await actor.GetConfig(req)`."""

    def __init__(self, stub: settings_pb2_grpc.SettingsServiceStub, metadata: Any) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, method: str) -> Callable[[Any], Awaitable[Any]]:
        rpc = getattr(self._stub, method)
        return lambda request: rpc(request, metadata=self._metadata, timeout=10)


class Client:
    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = settings_pb2_grpc.SettingsServiceStub(self.channel)

    def as_(self, user: str = "alice", *, service: str = "gateway", member: bool = True) -> Actor:
        token = mint_service_token(SERVICE_SECRET, service)
        return Actor(self.stub, outgoing_metadata(token, user_id=user, is_member=member))

    async def close(self) -> None:
        await self.channel.close()


async def rpc_error(call: Awaitable[Any]) -> RemoteError:
    """The error a call fails with (the test fails if it succeeds)."""
    try:
        result = await call
    except grpc.aio.AioRpcError as err:
        return from_rpc_error(err)
    raise AssertionError(f"expected the call to fail, got {result!r}")


def config(
    backend_type: int = TEXT,
    provider: str = "openai",
    model: str = "gpt-4o",
    *,
    temperature: float | None = None,
    mode: int = MEMBER,
    options: dict[str, str] | None = None,
    base_url: str = "",
) -> settings_pb2.BackendConfig:
    message = settings_pb2.BackendConfig(
        backend_type=backend_type,  # type: ignore[arg-type]
        provider=provider,
        model=model,
        mode=mode,  # type: ignore[arg-type]
        options=options or {},
        base_url=base_url,
    )
    if temperature is not None:
        message.temperature = temperature
    return message


def put(
    cfg: settings_pb2.BackendConfig, expected_version: int = -1
) -> settings_pb2.PutConfigRequest:
    return settings_pb2.PutConfigRequest(config=cfg, expected_version=expected_version)


def resolve(backend_type: int = TEXT) -> settings_pb2.ResolveConfigRequest:
    return settings_pb2.ResolveConfigRequest(backend_type=backend_type)  # type: ignore[arg-type]


def set_key(
    api_key: str, backend_type: int = TEXT, provider: str = ""
) -> settings_pb2.SetApiKeyRequest:
    return settings_pb2.SetApiKeyRequest(
        backend_type=backend_type,  # type: ignore[arg-type]
        api_key=api_key,
        provider=provider,
    )


async def database_contains(conn: asyncpg.Connection, secret: str) -> list[str]:
    """Tables in the settings and public schemas whose rows contain `secret` (as text or bytes)."""
    found = []
    tables = await conn.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('settings', 'public') AND table_type = 'BASE TABLE'"
    )
    hex_secret = secret.encode().hex()
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        rows = await conn.fetch(f"SELECT r::text AS line FROM {name} r")
        if any(secret in r["line"] or hex_secret in r["line"] for r in rows):
            found.append(name)
    return found
