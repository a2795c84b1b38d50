"""Wiring: settings in, a ready-to-start gRPC server out. No I/O until `start()`."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.grpc_server import GrpcService, build_server
from svc_common.lifecycle import Background, BackgroundTask, Service
from text_svc.catalog import ModelCatalog
from text_svc.config import Settings
from text_svc.config_source import ConfigSource, config_source, watch_settings_changes
from text_svc.generation import Upstream
from text_svc.metering import Metering
from text_svc.providers import ProviderClients
from text_svc.service import TextService

log = logging.getLogger(__name__)

SERVICE_NAME = text_pb2.DESCRIPTOR.services_by_name["TextService"].full_name


class TextServer(Service):
    """The gRPC server plus what lives beside it: the settings-change watcher, provider clients,
    pending usage events. `stop` lets in-flight calls finish within the grace period (then
    cancels them, which ends their streams cleanly), then flushes usage events and closes."""

    name = "text-svc"

    def __init__(
        self,
        grpc_service: GrpcService,
        *,
        settings: Settings,
        service: TextService,
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
        self._grace: float | None = None

    async def open(self) -> None:
        s = self.settings
        if not s.settings_target:
            log.info(
                "settings-svc not configured: every caller gets %s %s",
                s.default_provider,
                s.default_model,
            )
        if not s.billing_target:
            log.warning(
                "billing-svc not configured: member mode runs WITHOUT credit holds (development)"
            )
        if self._redis is None:
            log.warning("redis_url not configured: no usage events are published")

    def background(self) -> Background:
        if self._redis is None or not self.settings.settings_target:
            return {}
        redis, channel, configs = self._redis, self.settings.settings_changed_channel, self._configs
        # Keeps the config cache right for the calls in flight; cancelled once they are done.
        return {
            "settings-changes": BackgroundTask(
                lambda: watch_settings_changes(redis, channel, configs)
            )
        }

    async def stop(self, grace: float | None = None) -> None:
        self._grace = self.settings.grace_seconds if grace is None else grace
        await super().stop(grace)

    async def close(self) -> None:
        grace = self._grace or 0.0
        await self._service.drain(timeout_s=5.0)
        await self._metering.drain(timeout_s=max(grace, 5.0))
        await self._clients.aclose()
        await self._configs.aclose()
        await self._metering.aclose()
        if self._redis is not None:
            await self._redis.aclose()


def create_server(settings: Settings) -> TextServer:
    redis = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    clients = ProviderClients(settings)
    configs = config_source(settings)
    metering = Metering(settings, redis)
    service = TextService(
        settings, configs, Upstream(settings, clients), metering, ModelCatalog(clients)
    )
    server, port, health = build_server(settings, [SERVICE_NAME])
    text_pb2_grpc.add_TextServiceServicer_to_server(service, server)
    return TextServer(
        GrpcService(server, port, health, [SERVICE_NAME]),
        settings=settings,
        service=service,
        configs=configs,
        clients=clients,
        metering=metering,
        redis=redis,
    )
