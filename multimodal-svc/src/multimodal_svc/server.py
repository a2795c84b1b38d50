"""Wiring: settings in, a ready-to-start gRPC server out (svc_common.lifecycle). No I/O until
`start()`."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from PIL import Image

from grpc_stubs.multimodal.v1 import multimodal_pb2, multimodal_pb2_grpc
from multimodal_svc.config import Settings
from multimodal_svc.config_source import ConfigSource, config_source
from multimodal_svc.metering import Metering
from multimodal_svc.providers import ProviderClients
from multimodal_svc.service import MultimodalService
from svc_common.grpc_server import GrpcService, build_server
from svc_common.lifecycle import Background, BackgroundTask, Service
from svc_common.settings_changes import watch as watch_settings_changes

log = logging.getLogger(__name__)

SERVICE_NAME = multimodal_pb2.DESCRIPTOR.services_by_name["MultimodalService"].full_name


class MultimodalServer(Service):
    """The gRPC server plus the settings-change watcher, provider clients and pending usage
    events; `close` (after the grace period) flushes usage events and closes the clients."""

    name = "multimodal-svc"

    def __init__(
        self,
        grpc_service: GrpcService,
        *,
        settings: Settings,
        service: MultimodalService,
        configs: ConfigSource,
        clients: ProviderClients,
        metering: Metering,
        redis: Any | None,
    ) -> None:
        super().__init__(settings, grpc_service)
        self.settings: Settings = settings
        self._service = service
        self._configs = configs
        self._clients = clients
        self._metering = metering
        self._redis = redis

    async def open(self) -> None:
        if not self.settings.billing_target:
            log.warning(
                "billing-svc not configured: member mode runs WITHOUT credit holds (development)"
            )
        if self._redis is None:
            log.warning("redis_url not configured: no usage events are published")

    def background(self) -> Background:
        if self._redis is None or not self.settings.settings_target:
            return {}
        redis, channel, configs = self._redis, self.settings.settings_changed_channel, self._configs
        return {
            "settings-changes": BackgroundTask(
                lambda: watch_settings_changes(redis, channel, configs)
            )
        }

    async def close(self) -> None:
        self._service.abandon_open_streams()
        await self._metering.drain(timeout_s=max(self.settings.grace_seconds, 5.0))
        await self._clients.aclose()
        await self._configs.aclose()
        await self._metering.aclose()
        if self._redis is not None:
            await self._redis.aclose()


def create_server(settings: Settings) -> MultimodalServer:
    # Pillow's own decompression-bomb guard, at the operator's pixel cap (intake also checks the
    # header's size before decoding anything).
    Image.MAX_IMAGE_PIXELS = settings.max_image_pixels
    redis = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    clients = ProviderClients(settings)
    configs = config_source(settings)
    metering = Metering(settings, redis)
    service = MultimodalService(settings, configs, clients, metering)
    server, port, health = build_server(settings, [SERVICE_NAME])
    multimodal_pb2_grpc.add_MultimodalServiceServicer_to_server(service, server)
    return MultimodalServer(
        GrpcService(server, port, health, [SERVICE_NAME]),
        settings=settings,
        service=service,
        configs=configs,
        clients=clients,
        metering=metering,
        redis=redis,
    )
