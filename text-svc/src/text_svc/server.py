"""Wiring: settings in, a ready-to-start gRPC server out. No I/O until `start()`."""

from __future__ import annotations

import logging
import os
import socket

from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.grpc_server import GrpcService, build_server
from svc_common.model_server import ModelServer, open_redis
from text_svc.catalog import ModelCatalog
from text_svc.config_source import config_source
from text_svc.environment import Settings
from text_svc.generation import Upstream
from text_svc.metering import Metering
from text_svc.providers import ProviderClients
from text_svc.service import TextService

log = logging.getLogger(__name__)

SERVICE_NAME = text_pb2.DESCRIPTOR.services_by_name["TextService"].full_name


class TextServer(ModelServer):
    """The gRPC server plus what lives beside it (`svc_common.model_server`)."""

    name = "text-svc"

    settings: Settings

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


def create_server(settings: Settings) -> TextServer:
    redis = open_redis(settings)
    clients = ProviderClients(settings)
    configs = config_source(settings)
    # Names this process on its credit leases, for operators: which replica holds one.
    metering = Metering(settings, redis, holder=f"{socket.gethostname()}-{os.getpid()}")
    service = TextService(
        settings, configs, Upstream(settings, clients), metering, ModelCatalog(clients)
    )
    server, port, health = build_server(settings, [SERVICE_NAME])
    text_pb2_grpc.add_TextServiceServicer_to_server(service, server)
    return TextServer(
        GrpcService(server, port, health, [SERVICE_NAME]),
        settings=settings,
        configs=configs,
        clients=clients,
        metering=metering,
        redis=redis,
        finish_calls=lambda: service.drain(timeout_s=5.0),
    )
