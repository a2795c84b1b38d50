"""Wiring: migrations, the Postgres pool, the gRPC service, the usage consumer, the hold sweeper."""

from __future__ import annotations

import logging

import asyncpg

from billing_svc import db
from billing_svc.consumer import UsageConsumer
from billing_svc.environment import Settings
from billing_svc.prices import PriceBook
from billing_svc.service import BillingServicer
from billing_svc.sweeper import HoldSweeper
from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from svc_common.grpc_server import GrpcService, build_server
from svc_common.lifecycle import Background, BackgroundTask, Service

log = logging.getLogger(__name__)

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


class BillingServer(Service):
    """The gRPC server plus the background tasks of one billing-svc process."""

    name = "billing-svc"

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        grpc_service: GrpcService,
        consumer: UsageConsumer | None,
        sweeper: HoldSweeper | None,
    ) -> None:
        super().__init__(settings, grpc_service)
        self.settings: Settings = settings
        self.pool = pool
        self.consumer = consumer
        self.sweeper = sweeper
        self._pool_open = False

    def migrate_on_start(self) -> bool:
        return self.settings.migrate_on_start

    async def migrate(self) -> None:
        await db.migrate(self.settings.database_url.get_secret_value())

    async def ready(self) -> None:
        await self.pool  # connects (the schema is current by now)
        self._pool_open = True

    def background(self) -> Background:
        # Both finish when asked: the consumer its batch in flight, the sweeper its pass.
        tasks = {}
        if self.consumer is not None:
            tasks["usage-consumer"] = BackgroundTask(self.consumer.run, finishes=True)
        if self.sweeper is not None:
            tasks["hold-sweeper"] = BackgroundTask(self.sweeper.run, finishes=True)
        return tasks

    def stopping(self) -> None:
        """Stop reading events and sweeping; the batch in flight gets the grace period (then its
        entries stay pending and are claimed by another replica)."""
        if self.consumer is not None:
            self.consumer.stop()
        if self.sweeper is not None:
            self.sweeper.stop()

    async def close(self) -> None:
        if self._pool_open:
            await self.pool.close()


def create_server(settings: Settings) -> BillingServer:
    """Build the server (no I/O): start() migrates (BILLING_SVC_MIGRATE_ON_START), opens the
    pool, starts the consumer and the sweeper, then serves."""
    pool = db.unopened_pool(
        settings.database_url.get_secret_value(),
        settings.db_pool_max_size,
        settings.db_pool_min_size,
    )
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
