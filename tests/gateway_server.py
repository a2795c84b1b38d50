"""Run the gateway in-process on a free port, for tests (the gateway's own and the
cross-service ones; `pythonpath` puts this folder on every test's path):

    async with serve_gateway(settings) as base_url:   # e.g. "http://127.0.0.1:54321"
        ...

Real uvicorn with the protocol and limits of `python -m gateway`, real sockets, the app's
lifespan (its gRPC channels) included.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.environment import Settings
from gateway.server import server_config


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that says when it is listening and leaves the process's signals alone."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


@contextlib.asynccontextmanager
async def serve_gateway(
    settings: Settings, *, host: str = "127.0.0.1", app: FastAPI | None = None
) -> AsyncIterator[str]:
    """The base URL of a gateway built from `settings` (or `app`, built from them and changed by
    the test), listening on a free port until exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = server_config(
        app or create_app(settings),
        settings,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
    if not server.listening.is_set():
        listening.cancel()
        sock.close()
        await serving  # raises why startup failed
        raise RuntimeError("the gateway stopped during startup")
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await serving
        sock.close()
