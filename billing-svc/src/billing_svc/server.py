"""Wiring: migrations, the Postgres pool, the gRPC service, the usage consumer, the hold sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import asyncpg

from billing_svc import db
from billing_svc.config import Settings
from billing_svc.consumer import UsageConsumer
from billing_svc.prices import PriceBook
from billing_svc.service import BillingServicer
from billing_svc.sweeper import HoldSweeper
from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from svc_common.grpc_server import GrpcService, build_server

log = logging.getLogger(__name__)

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


class BillingServer:
    """The gRPC server plus the background tasks of one billing-svc process."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        grpc_service: GrpcService,
        consumer: UsageConsumer | None,
        sweeper: HoldSweeper | None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.grpc = grpc_service
        self.consumer = consumer
        self.sweeper = sweeper
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        return self.grpc.port

    async def start(self) -> None:
        await self.grpc.start()
        if self.consumer is not None:
            self._tasks.append(asyncio.create_task(self.consumer.run(), name="usage-consumer"))
        if self.sweeper is not None:
            self._tasks.append(asyncio.create_task(self.sweeper.run(), name="hold-sweeper"))
        log.info("billing-svc listening on port %d", self.port)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls and reading events; finish the calls and the batch in flight."""
        grace = self.settings.grace_seconds if grace is None else grace
        if self.consumer is not None:
            self.consumer.stop()
        if self.sweeper is not None:
            self.sweeper.stop()
        await self.grpc.stop(grace)
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace)
            for task in late:  # its entries stay pending and are claimed by another replica
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.pool.close()

    async def serve_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        signalled = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signalled.set)
        await self.start()
        try:
            await signalled.wait()
            log.info("stopping: finishing calls and the batch in flight")
        finally:
            await self.stop()


async def create_server(settings: Settings) -> BillingServer:
    """Apply migrations and build the server ; start() or serve_until_signalled() runs it."""
    database_url = settings.database_url.get_secret_value()
    await db.migrate(database_url)
    pool = await db.create_pool(database_url, settings.db_pool_size)
    prices = PriceBook(settings.price_cache_s)
    server, port, health = build_server(settings, [SERVICE_NAME])
    billing_pb2_grpc.add_BillingServiceServicer_to_server(
        BillingServicer(settings, pool, prices), server
    )
    consumer = sweeper = None
    if settings.run_consumer:
        consumer = UsageConsumer(settings, pool, prices)
        sweeper = HoldSweeper(pool, settings.sweep_interval_s)
    return BillingServer(
        settings, pool, GrpcService(server, port, health, [SERVICE_NAME]), consumer, sweeper
    )
