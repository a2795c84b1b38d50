"""python -m text_svc: read TEXT_SVC_* settings, serve until SIGTERM, shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop

from svc_common.logging import setup_logging
from svc_common.telemetry import setup_tracing
from text_svc.config import Settings
from text_svc.server import create_server

log = logging.getLogger("text_svc")


async def serve(settings: Settings) -> None:
    server = create_server(settings)
    await server.start()
    # Signal handlers before the ready line: a supervisor may stop us as soon as it sees it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("text-svc ready on port %d", server.port)
    await stop.wait()
    log.info("stopping: finishing in-flight calls for up to %.0fs", settings.grace_seconds)
    await server.stop(settings.grace_seconds)
    log.info("stopped")


def main() -> None:
    settings = Settings()
    setup_logging("text-svc", settings.log_level)
    setup_tracing("text-svc")
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
