"""Wiring: settings in, a ready-to-start gRPC server out. No I/O until `start()`."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from grpc_stubs.image.v1 import image_pb2, image_pb2_grpc
from image_svc.config import Settings
from image_svc.metering import Metering
from image_svc.plan import ImageConfig, config_from, default_config
from image_svc.providers import clients as provider_clients
from image_svc.providers.base import ImageClient
from image_svc.service import ImageService
from image_svc.store import ImageStore
from svc_common import settings_changes
from svc_common.auth import Caller
from svc_common.config_resolution import ConfigResolver
from svc_common.grpc_server import GrpcService, build_server
from svc_common.lifecycle import Background, BackgroundTask, Service
from upstream import ClientPool

log = logging.getLogger(__name__)

SERVICE_NAME = image_pb2.DESCRIPTOR.services_by_name["ImageService"].full_name


class ImageServer(Service):
    name = "image-svc"

    def __init__(
        self,
        grpc_service: GrpcService,
        *,
        settings: Settings,
        service: ImageService,
        resolver: ConfigResolver[ImageConfig] | None,
        clients: ClientPool[ImageClient],
        metering: Metering,
        redis: Any | None,
    ) -> None:
        super().__init__(settings, grpc_service)
        self.settings: Settings = settings
        self._service = service
        self._resolver = resolver
        self._clients = clients
        self._metering = metering
        self._redis = redis
        self._grace: float | None = None

    async def open(self) -> None:
        s = self.settings
        if not s.member_mode:
            log.info("image member mode is off: members need their own key (IMAGE_SVC_MEMBER_MODE)")
        if not s.billing_target and s.member_mode:
            log.warning("billing-svc not configured: member mode runs WITHOUT credit holds")
        if self._redis is None:
            log.warning("redis_url not configured: no usage events, no response_format url")

    def background(self) -> Background:
        resolver = self._resolver
        if self._redis is None or resolver is None:
            return {}
        redis, channel = self._redis, self.settings.settings_changed_channel
        return {
            "settings-changes": BackgroundTask(
                lambda: settings_changes.watch(redis, channel, resolver)
            )
        }

    async def stop(self, grace: float | None = None) -> None:
        self._grace = self.settings.grace_seconds if grace is None else grace
        await super().stop(grace)

    async def close(self) -> None:
        await self._service.drain(timeout_s=5.0)
        await self._metering.drain(timeout_s=max(self._grace or 0.0, 5.0))
        await self._clients.aclose()
        if self._resolver is not None:
            await self._resolver.aclose()
        await self._metering.aclose()
        if self._redis is not None:
            await self._redis.aclose()


def create_server(settings: Settings) -> ImageServer:
    redis = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    clients = provider_clients(settings)
    resolver: ConfigResolver[ImageConfig] | None = None
    if settings.settings_target:
        if settings.service_token is None:
            raise RuntimeError("IMAGE_SVC_SERVICE_TOKEN is required to call settings-svc")
        resolver = ConfigResolver(
            settings.settings_target,
            settings.service_token.get_secret_value(),
            "image",
            config_from,
            ttl_s=settings.config_cache_ttl_s,
        )
        resolve = resolver.resolve
    else:

        async def resolve(who: Caller, timeout_s: float) -> ImageConfig:
            return default_config(settings, who.is_member)

    metering = Metering(settings, redis)
    secret = settings.image_url_secret.get_secret_value() if settings.image_url_secret else ""
    store = ImageStore(
        redis, secret, settings.image_url_ttl_s, settings.image_url_path, settings.redis_prefix
    )
    service = ImageService(settings, resolve, clients, metering, store)
    server, port, health = build_server(settings, [SERVICE_NAME])
    image_pb2_grpc.add_ImageServiceServicer_to_server(service, server)
    return ImageServer(
        GrpcService(server, port, health, [SERVICE_NAME]),
        settings=settings,
        service=service,
        resolver=resolver,
        clients=clients,
        metering=metering,
        redis=redis,
    )
