"""gRPC server bootstrap shared by every service: interceptors, health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from svc_common.auth import ServiceAuthInterceptor
from svc_common.config import ServiceSettings
from svc_common.errors import ErrorInterceptor
from svc_common.telemetry import server_interceptors

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
]


class GrpcService:
    """A built, not yet started, gRPC server with its health servicer and bound port."""

    def __init__(
        self, server: grpc.aio.Server, port: int, health: HealthServicer, names: Sequence[str]
    ):
        self.server = server
        self.port = port
        self.health = health
        self._names = list(names)

    async def start(self) -> None:
        await self.server.start()
        for name in ["", *self._names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        """Stop taking new calls, mark NOT_SERVING, let in-flight calls finish within `grace`."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    async def serve_until_signalled(self, grace: float) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: finishing in-flight calls for up to %.0fs", grace)
        await self.stop(grace)


def build_server(
    settings: ServiceSettings,
    service_names: Sequence[str],
    *,
    allowed_callers: frozenset[str] | None = None,
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    """A grpc.aio server with auth, error mapping and tracing, bound to settings.listen.

    Register servicers on the returned server, then wrap it in GrpcService to start it.
    """
    if settings.service_token_secret is None:
        raise RuntimeError(
            "service_token_secret is required: callers are authenticated by service token"
        )
    interceptors: list[grpc.aio.ServerInterceptor] = [
        *server_interceptors(),
        ServiceAuthInterceptor(settings.service_token_secret.get_secret_value(), allowed_callers),
        ErrorInterceptor(),
    ]
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise RuntimeError(f"could not bind {settings.listen}")
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return server, port, health
