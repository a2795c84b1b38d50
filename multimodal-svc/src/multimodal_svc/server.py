"""Wiring: settings in, a ready-to-start gRPC server out (svc_common.lifecycle). No I/O until
`start()`."""

from __future__ import annotations

import logging

from PIL import Image

from grpc_stubs.multimodal.v1 import multimodal_pb2, multimodal_pb2_grpc
from multimodal_svc.config_source import config_source
from multimodal_svc.environment import Settings
from multimodal_svc.metering import Metering
from multimodal_svc.providers import ProviderClients
from multimodal_svc.service import MultimodalService
from svc_common.grpc_server import GrpcService, build_server
from svc_common.model_server import ModelServer, open_redis

log = logging.getLogger(__name__)

SERVICE_NAME = multimodal_pb2.DESCRIPTOR.services_by_name["MultimodalService"].full_name


class MultimodalServer(ModelServer):
    """The gRPC server plus what lives beside it (`svc_common.model_server`)."""

    name = "multimodal-svc"

    settings: Settings

    async def open(self) -> None:
        if not self.settings.billing_target:
            log.warning(
                "billing-svc not configured: member mode runs WITHOUT credit holds (development)"
            )
        if self._redis is None:
            log.warning("redis_url not configured: no usage events are published")


def create_server(settings: Settings) -> MultimodalServer:
    # Pillow's own decompression-bomb guard, at the operator's pixel cap (intake also checks the
    # header's size before decoding anything).
    Image.MAX_IMAGE_PIXELS = settings.max_image_pixels
    redis = open_redis(settings)
    clients = ProviderClients(settings)
    configs = config_source(settings)
    metering = Metering(settings, redis)
    service = MultimodalService(settings, configs, clients, metering)

    async def finish_calls() -> None:
        service.abandon_open_streams()

    server, port, health = build_server(settings, [SERVICE_NAME])
    multimodal_pb2_grpc.add_MultimodalServiceServicer_to_server(service, server)
    return MultimodalServer(
        GrpcService(server, port, health, [SERVICE_NAME]),
        settings=settings,
        configs=configs,
        clients=clients,
        metering=metering,
        redis=redis,
        finish_calls=finish_calls,
    )
