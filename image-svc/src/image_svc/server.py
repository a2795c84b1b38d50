"""Wiring: settings in, a ready-to-start gRPC server out. No I/O until `start()`."""

from __future__ import annotations

import logging

from grpc_stubs.image.v1 import image_pb2, image_pb2_grpc
from image_svc.environment import Settings
from image_svc.metering import Metering
from image_svc.plan import config_from, default_config
from image_svc.providers import clients as provider_clients
from image_svc.service import ImageService
from image_svc.store import ImageStore
from svc_common.config_resolution import config_source
from svc_common.grpc_server import GrpcService, build_server
from svc_common.model_server import ModelServer, open_redis

log = logging.getLogger(__name__)

SERVICE_NAME = image_pb2.DESCRIPTOR.services_by_name["ImageService"].full_name


class ImageServer(ModelServer):
    """The gRPC server plus what lives beside it (`svc_common.model_server`)."""

    name = "image-svc"

    settings: Settings

    async def open(self) -> None:
        s = self.settings
        if not s.member_mode:
            log.info("image member mode is off: members need their own key (IMAGE_SVC_MEMBER_MODE)")
        if not s.billing_target and s.member_mode:
            log.warning("billing-svc not configured: member mode runs WITHOUT credit holds")
        if self._redis is None:
            log.warning("redis_url not configured: no usage events, no response_format url")


def create_server(settings: Settings) -> ImageServer:
    redis = open_redis(settings)
    clients = provider_clients(settings)
    configs = config_source(
        settings, "image", config_from, lambda who: default_config(settings, who.is_member)
    )
    metering = Metering(settings, redis)
    secret = settings.image_url_secret.get_secret_value() if settings.image_url_secret else ""
    store = ImageStore(
        redis, secret, settings.image_url_ttl_s, settings.image_url_path, settings.redis_prefix
    )
    service = ImageService(settings, configs.resolve, clients, metering, store)
    server, port, health = build_server(settings, [SERVICE_NAME])
    image_pb2_grpc.add_ImageServiceServicer_to_server(service, server)
    return ImageServer(
        GrpcService(server, port, health, [SERVICE_NAME]),
        settings=settings,
        configs=configs,
        clients=clients,
        metering=metering,
        redis=redis,
        finish_calls=lambda: service.drain(timeout_s=5.0),
    )
