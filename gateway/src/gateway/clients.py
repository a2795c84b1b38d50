"""gRPC clients of the backends: one long-lived channel each, a deadline on every call.

Every call carries the gateway's service token and the authenticated user (from the JWT) in
metadata. A failed call raises the gateway's ApiError, mapped once in `errors.from_remote`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import propagate

from gateway.auth import User
from gateway.environment import Settings
from gateway.errors import from_remote
from gateway.streaming import CallCancelled, ModelStream, cancelled_by_us
from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.image.v1 import image_pb2, image_pb2_grpc
from grpc_stubs.multimodal.v1 import multimodal_pb2, multimodal_pb2_grpc
from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import outgoing_metadata
from svc_common.errors import from_rpc_error
from svc_common.grpc_client import CHANNEL_OPTIONS
from svc_common.grpc_client import channel as open_channel

R = TypeVar("R")
Metadata = tuple[tuple[str, str], ...]


def open_model_channel(target: str) -> grpc.aio.Channel:
    """A channel for model calls: svc_common's options (keepalive; retries only for reads), but
    without OpenTelemetry's aio client interceptor.

    That interceptor awaits the whole unary call inside itself, so `call.cancel()` cancels the
    interceptor and not the RPC: a client that disconnects would not stop the model call (nor
    its spending). The trace still continues into the model service: calls on this channel
    carry the W3C traceparent in their metadata (`_Backend.metadata`).
    """
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


class _Backend:
    """One backend service: its channel, the gateway's identity on it, its deadline."""

    def __init__(
        self,
        name: str,
        channel: grpc.aio.Channel,
        service_token: str,
        deadline_s: float,
        *,
        inject_trace_context: bool = False,
    ):
        self.name = name
        self.channel = channel
        self._token = service_token
        self._deadline_s = deadline_s
        self._inject_trace_context = inject_trace_context

    def metadata(self, user: User, request_id: str) -> Metadata:
        metadata = outgoing_metadata(
            self._token, user_id=user.id, is_member=user.member, request_id=request_id
        )
        if self._inject_trace_context:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            metadata += tuple(carrier.items())
        return metadata

    async def _call(
        self,
        method: Callable[..., Awaitable[R]],
        request: Any,
        user: User,
        request_id: str,
    ) -> R:
        try:
            return await method(
                request, metadata=self.metadata(user, request_id), timeout=self._deadline_s
            )
        except grpc.aio.AioRpcError as err:
            raise from_remote(from_rpc_error(err), self.name) from None


class PendingCall(Generic[R]):
    """A unary call in flight: await `result()`, or `cancel()` it (and the work behind it)."""

    def __init__(self, call: Any, backend: str) -> None:
        self._call = call
        self._backend = backend

    async def result(self) -> R:
        try:
            return await self._call
        except grpc.aio.AioRpcError as err:
            raise from_remote(from_rpc_error(err), self._backend) from None
        except asyncio.CancelledError:
            if cancelled_by_us(self._call):
                raise CallCancelled from None
            raise

    def cancel(self) -> None:
        self._call.cancel()


class TextClient(_Backend):
    def __init__(self, channel: grpc.aio.Channel, settings: Settings, token: str) -> None:
        super().__init__(
            "text-svc",
            channel,
            token,
            settings.backend_deadline_s,
            inject_trace_context=settings.tracing_enabled(),
        )
        self._stub = text_pb2_grpc.TextServiceStub(channel)
        self._model_deadline_s = settings.upstream_deadline_s

    def generate(
        self, request: text_pb2.GenerateRequest, user: User, request_id: str
    ) -> PendingCall[text_pb2.GenerateResponse]:
        call = self._stub.Generate(
            request,
            metadata=self.metadata(user, request_id),
            timeout=self._model_deadline_s,
        )
        return PendingCall(call, self.name)

    def generate_stream(
        self, request: text_pb2.GenerateRequest, user: User, request_id: str
    ) -> ModelStream:
        call = self._stub.GenerateStream(
            request,
            metadata=self.metadata(user, request_id),
            timeout=self._model_deadline_s,
        )
        return ModelStream(call, self.name)

    async def list_models(self, user: User, request_id: str) -> text_pb2.ListModelsResponse:
        return await self._call(
            self._stub.ListModels, text_pb2.ListModelsRequest(), user, request_id
        )

    async def check_status(self, user: User, request_id: str) -> text_pb2.CheckStatusResponse:
        return await self._call(
            self._stub.CheckStatus, text_pb2.CheckStatusRequest(), user, request_id
        )


class MultimodalClient(_Backend):
    """multimodal-svc: the same calls as text-svc's, with image-carrying messages.

    multimodal.v1's answers are wire-compatible with text.v1's (the same field numbers for what
    both carry), so they are read as text.v1 messages: the chat answer and SSE machinery
    (gateway.chat, gateway.streaming) relays them exactly as text-svc's, tool and logprob fields
    empty.
    """

    def __init__(self, channel: grpc.aio.Channel, settings: Settings, token: str) -> None:
        super().__init__(
            "multimodal-svc",
            channel,
            token,
            settings.backend_deadline_s,
            inject_trace_context=settings.tracing_enabled(),
        )
        self._stub = multimodal_pb2_grpc.MultimodalServiceStub(channel)
        service = "/multimodal.v1.MultimodalService/"
        self._generate = channel.unary_unary(
            service + "Generate",
            request_serializer=multimodal_pb2.GenerateRequest.SerializeToString,
            response_deserializer=text_pb2.GenerateResponse.FromString,
        )
        self._generate_stream = channel.unary_stream(
            service + "GenerateStream",
            request_serializer=multimodal_pb2.GenerateRequest.SerializeToString,
            response_deserializer=text_pb2.GenerateStreamResponse.FromString,
        )
        self._model_deadline_s = settings.upstream_deadline_s

    def generate(
        self, request: multimodal_pb2.GenerateRequest, user: User, request_id: str
    ) -> PendingCall[text_pb2.GenerateResponse]:
        call = self._generate(
            request, metadata=self.metadata(user, request_id), timeout=self._model_deadline_s
        )
        return PendingCall(call, self.name)

    def generate_stream(
        self, request: multimodal_pb2.GenerateRequest, user: User, request_id: str
    ) -> ModelStream:
        call = self._generate_stream(
            request, metadata=self.metadata(user, request_id), timeout=self._model_deadline_s
        )
        return ModelStream(call, self.name)

    async def list_models(self, user: User, request_id: str) -> multimodal_pb2.ListModelsResponse:
        return await self._call(
            self._stub.ListModels, multimodal_pb2.ListModelsRequest(), user, request_id
        )

    async def check_status(self, user: User, request_id: str) -> multimodal_pb2.CheckStatusResponse:
        return await self._call(
            self._stub.CheckStatus, multimodal_pb2.CheckStatusRequest(), user, request_id
        )


class ImageClient(_Backend):
    """image-svc: image generation (whole or as a stream of progress events), its models and
    status, and the stored images behind signed URLs."""

    def __init__(self, channel: grpc.aio.Channel, settings: Settings, token: str) -> None:
        super().__init__(
            "image-svc",
            channel,
            token,
            settings.backend_deadline_s,
            inject_trace_context=settings.tracing_enabled(),
        )
        self._stub = image_pb2_grpc.ImageServiceStub(channel)
        self._model_deadline_s = settings.upstream_deadline_s

    def generate(
        self, request: image_pb2.GenerateRequest, user: User, request_id: str
    ) -> PendingCall[image_pb2.GenerateResponse]:
        call = self._stub.Generate(
            request, metadata=self.metadata(user, request_id), timeout=self._model_deadline_s
        )
        return PendingCall(call, self.name)

    def generate_stream(
        self, request: image_pb2.GenerateRequest, user: User, request_id: str
    ) -> ModelStream:
        call = self._stub.GenerateStream(
            request, metadata=self.metadata(user, request_id), timeout=self._model_deadline_s
        )
        return ModelStream(call, self.name)

    async def list_models(self, user: User, request_id: str) -> image_pb2.ListModelsResponse:
        return await self._call(
            self._stub.ListModels, image_pb2.ListModelsRequest(), user, request_id
        )

    async def check_status(self, user: User, request_id: str) -> image_pb2.CheckStatusResponse:
        return await self._call(
            self._stub.CheckStatus, image_pb2.CheckStatusRequest(), user, request_id
        )

    async def get_image(
        self, request: image_pb2.GetImageRequest, user: User, request_id: str
    ) -> image_pb2.GetImageResponse:
        return await self._call(self._stub.GetImage, request, user, request_id)


class SettingsClient(_Backend):
    def __init__(self, channel: grpc.aio.Channel, settings: Settings, token: str) -> None:
        super().__init__("settings-svc", channel, token, settings.backend_deadline_s)
        self._stub = settings_pb2_grpc.SettingsServiceStub(channel)

    async def get_configs(self, user: User, request_id: str) -> settings_pb2.GetConfigsResponse:
        return await self._call(
            self._stub.GetConfigs, settings_pb2.GetConfigsRequest(), user, request_id
        )

    async def get_config(
        self, backend_type: common_pb2.BackendType.ValueType, user: User, request_id: str
    ) -> settings_pb2.BackendConfig:
        request = settings_pb2.GetConfigRequest(backend_type=backend_type)
        return await self._call(self._stub.GetConfig, request, user, request_id)

    async def put_config(
        self, request: settings_pb2.PutConfigRequest, user: User, request_id: str
    ) -> settings_pb2.BackendConfig:
        return await self._call(self._stub.PutConfig, request, user, request_id)

    async def delete_config(
        self, backend_type: common_pb2.BackendType.ValueType, user: User, request_id: str
    ) -> None:
        request = settings_pb2.DeleteConfigRequest(backend_type=backend_type)
        await self._call(self._stub.DeleteConfig, request, user, request_id)

    async def set_api_key(
        self, request: settings_pb2.SetApiKeyRequest, user: User, request_id: str
    ) -> settings_pb2.ApiKeyInfo:
        return await self._call(self._stub.SetApiKey, request, user, request_id)

    async def delete_api_key(
        self, backend_type: common_pb2.BackendType.ValueType, user: User, request_id: str
    ) -> None:
        request = settings_pb2.DeleteApiKeyRequest(backend_type=backend_type)
        await self._call(self._stub.DeleteApiKey, request, user, request_id)

    async def list_presets(
        self, backend_type: common_pb2.BackendType.ValueType, user: User, request_id: str
    ) -> settings_pb2.ListPresetsResponse:
        request = settings_pb2.ListPresetsRequest(backend_type=backend_type)
        return await self._call(self._stub.ListPresets, request, user, request_id)


class BillingClient(_Backend):
    def __init__(self, channel: grpc.aio.Channel, settings: Settings, token: str) -> None:
        super().__init__("billing-svc", channel, token, settings.backend_deadline_s)
        self._stub = billing_pb2_grpc.BillingServiceStub(channel)

    async def get_balance(self, user: User, request_id: str) -> billing_pb2.Balance:
        return await self._call(
            self._stub.GetBalance, billing_pb2.GetBalanceRequest(), user, request_id
        )

    async def list_usage(
        self, request: billing_pb2.ListUsageRequest, user: User, request_id: str
    ) -> billing_pb2.ListUsageResponse:
        return await self._call(self._stub.ListUsage, request, user, request_id)


class Backends:
    """The gateway's channels, opened once at startup and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        token = settings.service_token.get_secret_value() if settings.service_token else ""
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._readiness_deadline_s = settings.readiness_deadline_s
        self.text: TextClient | None = None
        self.multimodal: MultimodalClient | None = None
        self.image: ImageClient | None = None
        self.settings: SettingsClient | None = None
        self.billing: BillingClient | None = None
        if settings.text_target:
            self._channels["text-svc"] = open_model_channel(settings.text_target)
            self.text = TextClient(self._channels["text-svc"], settings, token)
        if settings.multimodal_target:
            self._channels["multimodal-svc"] = open_model_channel(settings.multimodal_target)
            self.multimodal = MultimodalClient(self._channels["multimodal-svc"], settings, token)
        if settings.image_target:
            self._channels["image-svc"] = open_model_channel(settings.image_target)
            self.image = ImageClient(self._channels["image-svc"], settings, token)
        if settings.settings_target:
            self.settings = SettingsClient(
                self._open("settings-svc", settings.settings_target), settings, token
            )
        if settings.billing_target:
            self.billing = BillingClient(
                self._open("billing-svc", settings.billing_target), settings, token
            )

    def _open(self, name: str, target: str) -> grpc.aio.Channel:
        self._channels[name] = open_channel(target)
        return self._channels[name]

    async def readiness(self) -> dict[str, str]:
        """Each configured backend's grpc.health.v1 status, e.g. {"text-svc": "SERVING"}."""
        names = list(self._channels)
        results = await asyncio.gather(*(self._health(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _health(self, name: str) -> str:
        stub = health_pb2_grpc.HealthStub(self._channels[name])
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._readiness_deadline_s
            )
        except grpc.aio.AioRpcError as err:
            return err.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))
