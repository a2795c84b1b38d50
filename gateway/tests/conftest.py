"""Fixtures for the gateway's own tests: a real gateway (uvicorn on a free port) in front of real
gRPC servers that speak the backends' protos.

The backends here are scripted stand-ins of the text.v1, settings.v1 and billing.v1 contracts,
served with the same bootstrap as the real services (service-token auth, the error interceptor
with its rich statuses, health). They let these tests pin down what the gateway does with each
answer (shapes, status codes, headers, cancellation) without the real services; the end-to-end
tests in /tests run the gateway against the real ones.
"""

from __future__ import annotations

import importlib
import sys

# pytest's importlib mode imports this file as "gateway.tests.conftest" and, to do so, registers
# the folder /work/main/gateway (no __init__.py) as the module "gateway", hiding the real package
# (gateway/src/gateway). Put the real package back before anything imports from it; the test
# modules then resolve "gateway.tests" from sys.modules and leave "gateway" alone.
if not hasattr(sys.modules.get("gateway"), "__file__") or sys.modules["gateway"].__file__ is None:
    sys.modules.pop("gateway", None)
    _tests_package = sys.modules.get("gateway.tests")
    importlib.import_module("gateway")
    if _tests_package is not None:
        sys.modules["gateway"].tests = _tests_package  # type: ignore[attr-defined]

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from gateway_server import serve_gateway
from pydantic import SecretStr

from gateway.auth import mint_token
from gateway.environment import Settings
from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import Caller, caller, mint_service_token
from svc_common.environment import ServiceSettings
from svc_common.errors import Conflict, NotFound, ServiceError
from svc_common.grpc_server import GrpcService, build_server

JWT_SECRET = "gateway-test-jwt-secret-" + "0123456789abcdef" * 3  # 72 bytes: HS512 too
SERVICE_SECRET = "gateway-test-service-secret-0123456789"

# What the stand-in text-svc names every generation: text-svc mints its own id per call, which
# the completion id is made of, whatever x-request-id the client sent.
GENERATION_ID = "gen-1"


@dataclass
class TextScript:
    """What the text.v1 stand-in answers next."""

    content: str = "Hello there!"
    deltas: list[str] = field(default_factory=lambda: ["Hel", "lo", " there!"])
    finish_reason: str = "stop"
    input_tokens: int = 11
    output_tokens: int = 3
    balance_micros: int = -1
    model: str = "gpt-test"
    # Raised at the start of the call (before any stream event).
    error: ServiceError | None = None
    # Streams: raised after this many deltas.
    error_after_deltas: int | None = None
    # Stop after this many deltas and wait until cancelled (None: do not wait).
    hang_after_deltas: int | None = None
    # Wait until cancelled before answering at all.
    hang: bool = False
    # Streams: after the finish event, wait for this before completing (as text-svc settles
    # the request after its last event).
    hold_after_finish: asyncio.Event | None = None


class TextStandIn(text_pb2_grpc.TextServiceServicer):
    def __init__(self) -> None:
        self.script = TextScript()
        self.requests: list[tuple[text_pb2.GenerateRequest, Caller]] = []
        self.cancelled = asyncio.Event()
        self.waiting = asyncio.Event()
        self.completed_after_finish = asyncio.Event()

    async def _wait_for_cancel(self) -> None:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def Generate(
        self, request: text_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.GenerateResponse:
        self.requests.append((request, caller(context)))
        script = self.script
        if script.error:
            raise script.error
        if script.hang:
            await self._wait_for_cancel()
        return text_pb2.GenerateResponse(
            id=GENERATION_ID,
            model=script.model,
            provider="openai",
            content=script.content,
            finish_reason=script.finish_reason,
            usage=common_pb2.Usage(
                input_tokens=script.input_tokens, output_tokens=script.output_tokens
            ),
            created=1_700_000_000,
            balance_micros=script.balance_micros,
        )

    async def GenerateStream(
        self, request: text_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[text_pb2.GenerateStreamResponse]:
        self.requests.append((request, caller(context)))
        script = self.script
        if script.error:
            raise script.error
        if script.hang:
            await self._wait_for_cancel()
        yield text_pb2.GenerateStreamResponse(
            start=text_pb2.StreamStart(
                id=GENERATION_ID,
                model=script.model,
                provider="openai",
                created=1_700_000_000,
                balance_micros=script.balance_micros,
            )
        )
        for i, delta in enumerate(script.deltas):
            if script.error_after_deltas == i:
                raise ServiceError("the provider failed mid-stream", reason="UPSTREAM_ERROR")
            if script.hang_after_deltas == i:
                await self._wait_for_cancel()
            yield text_pb2.GenerateStreamResponse(delta=text_pb2.StreamDelta(content=delta))
        yield text_pb2.GenerateStreamResponse(
            finish=text_pb2.StreamFinish(
                finish_reason=script.finish_reason,
                usage=common_pb2.Usage(
                    input_tokens=script.input_tokens, output_tokens=script.output_tokens
                ),
            )
        )
        if script.hold_after_finish is not None:
            try:
                await script.hold_after_finish.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            self.completed_after_finish.set()

    async def ListModels(
        self, request: text_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.ListModelsResponse:
        return text_pb2.ListModelsResponse(
            models=[
                text_pb2.Model(id="gpt-test", provider="openai", owned_by="openai"),
                text_pb2.Model(id="gpt-test-mini", provider="openai", owned_by=""),
            ]
        )

    async def CheckStatus(
        self, request: text_pb2.CheckStatusRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.CheckStatusResponse:
        return text_pb2.CheckStatusResponse(
            ok=True, provider="openai", model="gpt-test", detail="", latency_ms=42
        )


class SettingsStandIn(settings_pb2_grpc.SettingsServiceServicer):
    """Keeps configs in memory, per user and backend type, with versions like settings-svc."""

    def __init__(self) -> None:
        self.configs: dict[tuple[str, int], settings_pb2.BackendConfig] = {}
        self.calls: list[tuple[str, Any, Caller]] = []

    def _config(self, user: str, backend_type: int) -> settings_pb2.BackendConfig:
        stored = self.configs.get((user, backend_type))
        if stored is None:
            return settings_pb2.BackendConfig(
                backend_type=backend_type, provider="openai", model="gpt-test", version=0
            )
        return stored

    async def GetConfigs(
        self, request: settings_pb2.GetConfigsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.GetConfigsResponse:
        who = caller(context)
        self.calls.append(("GetConfigs", request, who))
        return settings_pb2.GetConfigsResponse(
            configs=[self._config(who.require_user(), bt) for bt in (1, 2, 3)]
        )

    async def GetConfig(
        self, request: settings_pb2.GetConfigRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.BackendConfig:
        who = caller(context)
        self.calls.append(("GetConfig", request, who))
        return self._config(who.require_user(), request.backend_type)

    async def PutConfig(
        self, request: settings_pb2.PutConfigRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.BackendConfig:
        who = caller(context)
        self.calls.append(("PutConfig", request, who))
        current = self._config(who.require_user(), request.config.backend_type)
        if request.expected_version not in (-1, current.version):
            raise Conflict(
                f"the config changed since version {request.expected_version}: "
                f"it is now version {current.version}; read it again"
            )
        saved = settings_pb2.BackendConfig()
        saved.CopyFrom(request.config)
        saved.api_key.CopyFrom(current.api_key)
        saved.version = current.version + 1
        saved.updated_at = 1_700_000_000
        self.configs[(who.user_id, request.config.backend_type)] = saved
        return saved

    async def DeleteConfig(
        self, request: settings_pb2.DeleteConfigRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DeleteConfigResponse:
        who = caller(context)
        self.calls.append(("DeleteConfig", request, who))
        if self.configs.pop((who.require_user(), request.backend_type), None) is None:
            raise NotFound("no config is saved for this backend type")
        return settings_pb2.DeleteConfigResponse()

    async def SetApiKey(
        self, request: settings_pb2.SetApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ApiKeyInfo:
        who = caller(context)
        self.calls.append(("SetApiKey", request, who))
        config = self._config(who.require_user(), request.backend_type)
        config.api_key.CopyFrom(
            settings_pb2.ApiKeyInfo(
                is_set=True,
                hint="…" + request.api_key[-4:],
                fingerprint="0123456789ab",
                provider=request.provider or config.provider,
            )
        )
        self.configs[(who.user_id, request.backend_type)] = config
        return config.api_key

    async def DeleteApiKey(
        self, request: settings_pb2.DeleteApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.DeleteApiKeyResponse:
        who = caller(context)
        self.calls.append(("DeleteApiKey", request, who))
        return settings_pb2.DeleteApiKeyResponse()

    async def ListPresets(
        self, request: settings_pb2.ListPresetsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.ListPresetsResponse:
        self.calls.append(("ListPresets", request, caller(context)))
        return settings_pb2.ListPresetsResponse(
            presets=[
                settings_pb2.Preset(
                    provider="openai",
                    backend_type=common_pb2.BACKEND_TYPE_TEXT,
                    display_name="OpenAI",
                    api_style="openai",
                    models=["gpt-test", "gpt-test-mini"],
                    default_model="gpt-test",
                    temperature_min=0,
                    temperature_max=2,
                    default_temperature=0.7,
                    member_allowed=True,
                )
            ]
        )


class BillingStandIn(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self) -> None:
        self.usage_requests: list[billing_pb2.ListUsageRequest] = []

    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Balance:
        caller(context).require_user()
        return billing_pb2.Balance(balance_micros=4_250_000, held_micros=1_500)

    async def ListUsage(
        self, request: billing_pb2.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ListUsageResponse:
        self.usage_requests.append(request)
        row = billing_pb2.UsageTotal
        return billing_pb2.ListUsageResponse(
            totals=[
                row(backend_type=1, provider="openai", model="gpt-test", mode=1, requests=2,
                    input_tokens=20, output_tokens=6, cost_micros=300),
                row(backend_type=1, provider="anthropic", model="claude-test", mode=2, requests=1,
                    input_tokens=5, output_tokens=5, cost_micros=0),
                row(backend_type=3, provider="openai", model="dall-e-3", mode=1, requests=1,
                    images=1, cost_micros=40_000),
            ]
        )  # fmt: skip


@dataclass
class Backends:
    text: TextStandIn
    settings: SettingsStandIn
    billing: BillingStandIn
    service: GrpcService
    target: str


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    settings = ServiceSettings(listen="127.0.0.1:0", service_token_secret=SecretStr(SERVICE_SECRET))
    names = [
        text_pb2.DESCRIPTOR.services_by_name["TextService"].full_name,
        settings_pb2.DESCRIPTOR.services_by_name["SettingsService"].full_name,
        billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
    ]
    server, port, health = build_server(settings, names)
    text, settings_svc, billing = TextStandIn(), SettingsStandIn(), BillingStandIn()
    text_pb2_grpc.add_TextServiceServicer_to_server(text, server)
    settings_pb2_grpc.add_SettingsServiceServicer_to_server(settings_svc, server)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(billing, server)
    service = GrpcService(server, port, health, names)
    await service.start()
    yield Backends(text, settings_svc, billing, service, f"127.0.0.1:{port}")
    await service.stop(0)


def gateway_settings(target: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "jwt_hs256_secret": JWT_SECRET,
        "tracing": False,
    }
    if target:
        values |= {
            "text_target": target,
            "settings_target": target,
            "billing_target": target,
            "service_token": mint_service_token(SERVICE_SECRET, "gateway"),
        }
    return Settings(**(values | overrides))


@pytest.fixture
def token() -> str:
    return mint_token(JWT_SECRET, "alice", member=True)


@pytest.fixture
async def gateway(backends: Backends, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a gateway in front of the stand-ins, authenticated as alice (member)."""
    async with (
        serve_gateway(gateway_settings(backends.target)) as base_url,
        httpx.AsyncClient(
            base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=10
        ) as client,
    ):
        yield client


@pytest.fixture
def start_gateway() -> Callable[..., Any]:
    """serve_gateway with these tests' settings: `async with start_gateway(**overrides) as url`."""

    def start(target: str | None = None, **overrides: Any) -> Any:
        return serve_gateway(gateway_settings(target, **overrides))

    return start
