"""The whole platform in one test process: real servers on free ports, nothing mocked.

provider stand-ins (HTTP) ← text-svc and multimodal-svc (gRPC) ← gateway (HTTP); settings-svc and
billing-svc on the test's own database; usage events on the test's own Redis stream. Tests talk to
the gateway with the official openai SDK, exactly as the app's users do.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import openai
from gateway_server import serve_gateway
from image_svc.environment import Settings as ImageSettings
from image_svc.server import create_server as create_image
from multimodal_svc.environment import Settings as MultimodalSettings
from multimodal_svc.server import create_server as create_multimodal

from billing_svc.environment import Settings as BillingSettings
from billing_svc.server import create_server as create_billing
from gateway.auth import mint_token
from gateway.environment import Settings as GatewaySettings
from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from provider_stand_ins import StandIn
from settings_svc.environment import Settings as SettingsSettings
from settings_svc.server import create_server as create_settings
from svc_common.auth import mint_service_token, outgoing_metadata
from text_svc.environment import Settings as TextSettings
from text_svc.server import create_server as create_text

PLATFORM_OPENAI_KEY = "sk-platform-openai-0000000000000001"
PLATFORM_ANTHROPIC_KEY = "sk-ant-platform-00000000000000002"
# Keys users bring (BYOK); the stand-ins accept them so tests can see which one arrived.
USER_OPENAI_KEY = "sk-user-byok-openai-aaaaaaaaaaaa9999"
USER_ANTHROPIC_KEY = "sk-ant-user-byok-bbbbbbbbbbbb8888"
PLATFORM_STABILITY_KEY = "sk-platform-stability-000000000003"
USER_STABILITY_KEY = "sk-user-byok-stability-cccccccc7777"


@dataclass
class Platform:
    gateway_url: str
    jwt_secret: str
    service_secret: str
    openai: StandIn
    anthropic: StandIn
    ollama: StandIn
    text_settings: TextSettings
    billing_settings: BillingSettings
    text_port: int
    billing_port: int
    settings_port: int
    multimodal_settings: MultimodalSettings | None = None
    multimodal_port: int = 0
    stability: StandIn | None = None
    automatic1111: StandIn | None = None
    comfyui: StandIn | None = None
    image_settings: ImageSettings | None = None
    image_port: int = 0
    _clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    def token(self, user: str, *, member: bool = True, ttl_s: int = 3600) -> str:
        return mint_token(self.jwt_secret, user, member=member, ttl_s=ttl_s)

    def client(
        self, user: str, *, prefix: str = "/api/text-proxy/v1", **kwargs: Any
    ) -> openai.AsyncOpenAI:
        """An official openai SDK client for `user`, closed when the platform stops."""
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("api_key", self.token(user))
        client = openai.AsyncOpenAI(base_url=f"{self.gateway_url}{prefix}", **kwargs)
        self._clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self._clients:
            await client.close()

    def auth(self, user: str, *, member: bool = True) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(user, member=member)}"}

    async def grant(self, user: str, micros: int) -> int:
        """Credit a user as an operator would (billing-svc's Grant, operator identity)."""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.billing_port}") as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            reply = await stub.Grant(
                billing_pb2.GrantRequest(
                    user_id=user, amount_micros=micros, grant_id=secrets.token_hex(8), reason="test"
                ),
                metadata=outgoing_metadata(mint_service_token(self.service_secret, "operator")),
                timeout=10,
            )
        return reply.balance_micros


@contextlib.asynccontextmanager
async def running_platform(
    database_url: str,
    redis_url: str,
    prefix: str,
    *,
    text: dict[str, Any] | None = None,
    billing: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
    multimodal: dict[str, Any] | None = None,
    image: dict[str, Any] | None = None,
    stand_in_knobs: dict[str, Any] | None = None,
) -> AsyncIterator[Platform]:
    service_secret = secrets.token_urlsafe(32)
    jwt_secret = secrets.token_urlsafe(32)
    encryption_key = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    knobs = stand_in_knobs or {}
    channel = f"{prefix}settings-changed"
    async with contextlib.AsyncExitStack() as stack:
        openai_stand_in = await stack.enter_async_context(
            StandIn("openai", keys={PLATFORM_OPENAI_KEY, USER_OPENAI_KEY}, **knobs)
        )
        anthropic_stand_in = await stack.enter_async_context(
            StandIn("anthropic", keys={PLATFORM_ANTHROPIC_KEY, USER_ANTHROPIC_KEY}, **knobs)
        )
        ollama_stand_in = await stack.enter_async_context(StandIn("ollama", **knobs))
        stability_stand_in = await stack.enter_async_context(
            StandIn("stability", keys={PLATFORM_STABILITY_KEY, USER_STABILITY_KEY}, **knobs)
        )
        a1111_stand_in = await stack.enter_async_context(StandIn("automatic1111", **knobs))
        comfyui_stand_in = await stack.enter_async_context(StandIn("comfyui", **knobs))

        settings_settings = SettingsSettings(
            environment="test",
            service_token_secret=service_secret,
            database_url=database_url,
            redis_url=redis_url,
            settings_changed_channel=channel,
            encryption_keys=encryption_key,
            allowed_base_url_hosts=["127.0.0.1"],
        )
        settings_server = create_settings(settings_settings)
        await settings_server.start()
        stack.push_async_callback(settings_server.stop, None)

        billing_settings = BillingSettings(
            environment="test",
            service_token_secret=service_secret,
            database_url=database_url,
            redis_url=redis_url,
            usage_stream=f"{prefix}usage-events",
            consumer_group="billing",
            dead_letter_stream=f"{prefix}usage-events-dead",
            block_ms=100,
            **(billing or {}),
        )
        billing_server = create_billing(billing_settings)
        await billing_server.start()
        stack.push_async_callback(billing_server.stop, None)

        text_settings = TextSettings(
            environment="test",
            service_token_secret=service_secret,
            service_token=mint_service_token(service_secret, "text-svc"),
            settings_target=f"127.0.0.1:{settings_server.port}",
            billing_target=f"127.0.0.1:{billing_server.port}",
            redis_url=redis_url,
            usage_stream=f"{prefix}usage-events",
            settings_changed_channel=channel,
            openai_base_url=openai_stand_in.sdk_base_url,
            openai_api_key=PLATFORM_OPENAI_KEY,
            anthropic_base_url=anthropic_stand_in.sdk_base_url,
            anthropic_api_key=PLATFORM_ANTHROPIC_KEY,
            ollama_base_url=ollama_stand_in.base_url,
            # The same allow-list as settings-svc's: text-svc checks it again at every connection.
            **{"allowed_base_url_hosts": ["127.0.0.1"], **(text or {})},
        )
        text_server = create_text(text_settings)
        await text_server.start()
        stack.push_async_callback(text_server.stop, None)

        multimodal_settings = MultimodalSettings(
            environment="test",
            service_token_secret=service_secret,
            service_token=mint_service_token(service_secret, "multimodal-svc"),
            settings_target=f"127.0.0.1:{settings_server.port}",
            billing_target=f"127.0.0.1:{billing_server.port}",
            redis_url=redis_url,
            usage_stream=f"{prefix}usage-events",
            settings_changed_channel=channel,
            openai_base_url=openai_stand_in.sdk_base_url,
            openai_api_key=PLATFORM_OPENAI_KEY,
            anthropic_base_url=anthropic_stand_in.sdk_base_url,
            anthropic_api_key=PLATFORM_ANTHROPIC_KEY,
            ollama_base_url=ollama_stand_in.base_url,
            **{"allowed_base_url_hosts": ["127.0.0.1"], **(multimodal or {})},
        )
        multimodal_server = create_multimodal(multimodal_settings)
        await multimodal_server.start()
        stack.push_async_callback(multimodal_server.stop, None)

        image_settings = ImageSettings(
            environment="test",
            service_token_secret=service_secret,
            service_token=mint_service_token(service_secret, "image-svc"),
            settings_target=f"127.0.0.1:{settings_server.port}",
            billing_target=f"127.0.0.1:{billing_server.port}",
            redis_url=redis_url,
            redis_prefix=f"{prefix}image-svc:",
            usage_stream=f"{prefix}usage-events",
            settings_changed_channel=channel,
            openai_base_url=openai_stand_in.sdk_base_url,
            openai_api_key=PLATFORM_OPENAI_KEY,
            stability_base_url=stability_stand_in.base_url,
            stability_api_key=PLATFORM_STABILITY_KEY,
            automatic1111_base_url=a1111_stand_in.base_url,
            automatic1111_poll_s=0.02,
            comfyui_base_url=comfyui_stand_in.base_url,
            image_url_secret=secrets.token_urlsafe(32),
            **{"allowed_base_url_hosts": ["127.0.0.1"], **(image or {})},
        )
        image_server = create_image(image_settings)
        await image_server.start()
        stack.push_async_callback(image_server.stop, None)

        gateway_settings = GatewaySettings(
            environment="test",
            jwt_hs256_secret=jwt_secret,
            text_target=f"127.0.0.1:{text_server.port}",
            multimodal_target=f"127.0.0.1:{multimodal_server.port}",
            image_target=f"127.0.0.1:{image_server.port}",
            settings_target=f"127.0.0.1:{settings_server.port}",
            billing_target=f"127.0.0.1:{billing_server.port}",
            service_token=mint_service_token(service_secret, "gateway"),
            **(gateway or {}),
        )
        gateway_url = await stack.enter_async_context(serve_gateway(gateway_settings))
        platform = Platform(
            gateway_url=gateway_url,
            jwt_secret=jwt_secret,
            service_secret=service_secret,
            openai=openai_stand_in,
            anthropic=anthropic_stand_in,
            ollama=ollama_stand_in,
            text_settings=text_settings,
            billing_settings=billing_settings,
            text_port=text_server.port,
            billing_port=billing_server.port,
            settings_port=settings_server.port,
            multimodal_settings=multimodal_settings,
            multimodal_port=multimodal_server.port,
            stability=stability_stand_in,
            automatic1111=a1111_stand_in,
            comfyui=comfyui_stand_in,
            image_settings=image_settings,
            image_port=image_server.port,
        )
        stack.push_async_callback(platform.close_clients)
        yield platform
