"""One lifecycle for every gRPC service process: the event loop, signals, migrations by policy,
background tasks started and stopped in one place, and the graceful stop (health NOT_SERVING,
then in-flight calls get the grace period).

A service subclasses `Service`, fills in the hooks it needs, and its `__main__` calls `run`:

    open()        resources (pools, clients); runs before anything is served
    migrate()     the schema's migrations; called by start() only when `migrate_on_start()`
    ready()       what serving needs once the schema is current (caches)
    background()  the long-running tasks (consumers, sweepers, watchers), started once serving
    stopping()    asks the tasks that finish to finish (they get the grace period, then are
                  cancelled); the others are cancelled once the calls in flight are done
    close()       releases what open() took, after calls and tasks are done
    hangup()      SIGHUP: re-read what operators change at run time

With <PREFIX>METRICS_PORT set, the metrics port (svc_common.metrics) is served from before the
first call until the service has stopped.

Tests build a service with its factory and call `start()` / `stop(grace)` themselves; processes
call `run(serve(create_server))`, which adds uvloop and the signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import uvloop

from svc_common.environment import ServiceSettings
from svc_common.grpc_server import GrpcService
from svc_common.metrics import MetricsServer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackgroundTask:
    """A long-running task of a service process.

    `finishes`: stopping() asks it to finish (a consumer ends its batch) and it gets the grace
    period; otherwise it serves the calls in flight (a cache watcher) and is cancelled once they
    are done."""

    run: Callable[[], Coroutine[Any, Any, None]]
    finishes: bool = False


Background = dict[str, BackgroundTask]


class Service:
    """A gRPC service with what lives beside it in one process. `name` is the service's name
    in logs ("text-svc"); `settings` its environment settings."""

    name = "service"

    def __init__(self, settings: ServiceSettings, grpc: GrpcService) -> None:
        self.settings = settings
        self.grpc = grpc
        self._tasks: dict[asyncio.Task[None], BackgroundTask] = {}
        self._started = False
        self._stopped = False
        self._metrics: MetricsServer | None = None

    @property
    def port(self) -> int:
        return self.grpc.port

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port while serving (None: no metrics port configured)."""
        return self._metrics.port if self._metrics is not None else None

    # Hooks ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Take the resources the service needs (pools, clients)."""

    def migrate_on_start(self) -> bool:
        """Whether start() applies migrations (data-owning services: their MIGRATE_ON_START)."""
        return False

    async def migrate(self) -> None:
        """Apply this service's migrations (called by start() when migrate_on_start())."""

    async def ready(self) -> None:
        """Load what serving needs once the schema is known to be current (e.g. caches)."""

    def background(self) -> Background:
        """The long-running tasks of this process by name, started once the service is ready."""
        return {}

    async def hangup(self) -> None:
        """SIGHUP: re-read what operators change at run time (nothing by default)."""

    def stopping(self) -> None:
        """Ask the background tasks to finish what they are doing and return."""

    async def close(self) -> None:
        """Release what open() took; runs after calls and background tasks are done."""

    # The lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open, migrate (by policy), serve (health SERVING), then start the background tasks."""
        self._started = True
        await self.open()
        try:
            if self.migrate_on_start():
                await self.migrate()
            await self.ready()
            if self.settings.metrics_port is not None:
                host = self.settings.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"
                self._metrics = MetricsServer(host, self.settings.metrics_port)
            await self.grpc.start()
            # After the server answers: what a background task changes (a usage event applied)
            # is then always readable through the service.
            loop = asyncio.get_running_loop()
            for task_name, task in self.background().items():
                self._tasks[loop.create_task(task.run(), name=task_name)] = task
        except BaseException:
            await self._stop_tasks(0)
            await self.close()
            await self._close_metrics()
            raise
        if self._metrics is not None:
            log.info("%s metrics on port %d", self.name, self._metrics.port)
        log.info("%s ready on port %d", self.name, self.port)

    async def stop(self, grace: float | None = None) -> None:
        """Mark NOT_SERVING and stop taking calls; in-flight calls and background tasks get
        `grace` seconds (default: the grace_seconds setting), then are cancelled; then close."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        grace = self.settings.grace_seconds if grace is None else grace
        self.stopping()
        await self.grpc.stop(grace)
        await self._stop_tasks(grace)
        await self.close()
        await self._close_metrics()

    async def _close_metrics(self) -> None:
        if self._metrics is not None:
            metrics_server, self._metrics = self._metrics, None
            await asyncio.to_thread(metrics_server.close)

    async def _stop_tasks(self, grace: float) -> None:
        finishing = [task for task, spec in self._tasks.items() if spec.finishes]
        late = set(self._tasks) - set(finishing)
        if finishing:
            late |= (await asyncio.wait(finishing, timeout=grace))[1]
        for task in late:  # a consumer's unfinished entries stay pending for another replica
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


async def serve(build: Callable[[], Service]) -> int:
    """Build the service (inside the loop: clients bind to it), start it, serve until SIGTERM or
    SIGINT, then stop it gracefully. SIGHUP calls the service's `hangup()` (e.g. reload caches)."""
    service = build()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers before the ready line: a supervisor may stop us as soon as it sees it.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hangups: set[asyncio.Task[None]] = set()

    def hangup() -> None:
        task = loop.create_task(service.hangup())
        hangups.add(task)
        task.add_done_callback(hangups.discard)

    if type(service).hangup is not Service.hangup:  # else SIGHUP keeps its default meaning
        loop.add_signal_handler(signal.SIGHUP, hangup)
    await service.start()
    try:
        await stop.wait()
        log.info(
            "stopping: finishing in-flight work for up to %.0fs", service.settings.grace_seconds
        )
    finally:
        await service.stop()
    log.info("stopped")
    return 0


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run a process's main coroutine on uvloop (every service, every command) and return its
    exit code."""
    return uvloop.run(main)
