"""Wiring: settings in, a ready-to-start gRPC server out. No I/O until `start()`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
import redis.asyncio as aioredis
from grpc_health.v1._async import HealthServicer

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.grpc_server import GrpcService, build_server
from text_svc.catalog import ModelCatalog
from text_svc.config import Settings
from text_svc.config_source import ConfigSource, config_source, watch_settings_changes
from text_svc.generation import Upstream
from text_svc.metering import Metering
from text_svc.providers import ProviderClients
from text_svc.service import TextService

log = logging.getLogger(__name__)

SERVICE_NAME = text_pb2.DESCRIPTOR.services_by_name["TextService"].full_name


class TextServer(GrpcService):
    """The gRPC server plus what lives beside it: the settings-change watcher, provider clients,
    pending usage events. `stop` lets in-flight calls finish within the grace period (then
    cancels them, which ends their streams cleanly), then flushes usage events and closes."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health: HealthServicer,
        *,
        settings: Settings,
        service: TextService,
        configs: ConfigSource,
        clients: ProviderClients,
        metering: Metering,
        redis: Any | None,
    ) -> None:
        super().__init__(server, port, health, [SERVICE_NAME])
        self.settings = settings
        self._service = service
        self._configs = configs
        self._clients = clients
        self._metering = metering
        self._redis = redis
        self._watcher: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
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
        elif s.settings_target:
            self._watcher = asyncio.get_running_loop().create_task(
                watch_settings_changes(self._redis, s.settings_changed_channel, self._configs)
            )
        await super().start()

    async def stop(self, grace: float | None) -> None:
        if self._stopped:
            return
        self._stopped = True
        await super().stop(grace)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._service.drain(timeout_s=5.0)
        await self._metering.drain(timeout_s=max(grace or 0.0, 5.0))
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
        server,
        port,
        health,
        settings=settings,
        service=service,
        configs=configs,
        clients=clients,
        metering=metering,
        redis=redis,
    )
