"""Wiring: gRPC server, database pool, Redis publisher and preset cache (no I/O until start)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import redis.asyncio as aioredis

from grpc_stubs.settings.v1 import settings_pb2, settings_pb2_grpc
from settings_svc.changes import ChangePublisher
from settings_svc.environment import Settings
from settings_svc.keystore import KeyRing
from settings_svc.migrate import migrate
from settings_svc.presets import PresetCatalog
from settings_svc.service import SettingsServicer
from settings_svc.store import ConfigStore, create_pool
from svc_common.auth import MODEL_SERVICES
from svc_common.grpc_server import GrpcService, build_server
from svc_common.lifecycle import Background, BackgroundTask, Service

log = logging.getLogger(__name__)

SERVICE_NAME = settings_pb2.DESCRIPTOR.services_by_name["SettingsService"].full_name
# The gateway reads and writes configs; model services also resolve them (checked again there).
ALLOWED_CALLERS = frozenset({"gateway", *MODEL_SERVICES})


class SettingsServer(Service):
    """The settings gRPC server; start() opens the pool, migrates the schema (when
    SETTINGS_SVC_MIGRATE_ON_START), loads the presets, then opens for calls."""

    name = "settings-svc"

    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        server, port, health = build_server(
            settings, [SERVICE_NAME], allowed_callers=ALLOWED_CALLERS
        )
        super().__init__(settings, GrpcService(server, port, health, [SERVICE_NAME]))
        self.settings: Settings = settings
        self.keyring = keyring
        self.presets = PresetCatalog()
        self.servicer = SettingsServicer(self.presets, keyring, settings.allowed_base_url_hosts)
        settings_pb2_grpc.add_SettingsServiceServicer_to_server(self.servicer, server)
        self.pool: asyncpg.Pool | None = None
        self._changes: ChangePublisher | None = None

    async def open(self) -> None:
        self.pool = await create_pool(self.settings)

    def migrate_on_start(self) -> bool:
        return self.settings.migrate_on_start

    async def migrate(self) -> None:
        assert self.pool is not None
        await migrate(self.pool, self.keyring, self.presets, self.settings.batch_size)

    async def ready(self) -> None:
        assert self.pool is not None
        if not self.settings.migrate_on_start:  # migrate() loaded them otherwise
            await self.presets.reload(self.pool)
        self._changes = ChangePublisher(
            aioredis.Redis.from_url(self.settings.redis_url.get_secret_value()),
            self.settings.settings_changed_channel,
        )
        self.servicer.bind(ConfigStore(self.pool), self._changes)

    def background(self) -> Background:
        return {"presets-reload": BackgroundTask(self._reload_presets_periodically)}

    async def hangup(self) -> None:
        await self.reload_presets()

    async def reload_presets(self) -> None:
        """Re-read provider presets (operators: SIGHUP, or wait `presets_reload_seconds`).

        A failure keeps the presets already loaded: the service goes on answering.
        """
        if self.pool is None:
            return
        try:
            await self.presets.reload(self.pool)
        except Exception as err:
            log.warning("could not reload presets (keeping the old ones): %s", type(err).__name__)
            return
        log.info("reloaded %d provider presets", len(self.presets.all()))

    async def _reload_presets_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presets_reload_seconds)
            await self.reload_presets()

    async def close(self) -> None:
        if self._changes is not None:
            await self._changes.close()
        if self.pool is not None:
            await self.pool.close()


def create_server(settings: Settings) -> SettingsServer:
    """Build the server; fails at once without a usable encryption key (outside development)."""
    return SettingsServer(settings, KeyRing.from_settings(settings))
