"""python -m gateway: serve with uvicorn (uvloop, httptools) on GATEWAY_HOST:GATEWAY_PORT."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.environment import Settings
from gateway.server import server_config
from svc_common.logging import setup_logging


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return server_config(
        create_app(settings),
        settings,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        # uvicorn's own logging config would replace the JSON logs set up in main().
        log_config=None,
        # SIGTERM: requests in flight, streams included, get the longest call's deadline plus a
        # margin by default (GATEWAY_GRACE_SECONDS), within the pod's termination grace period.
        timeout_graceful_shutdown=settings.shutdown_grace_s(),
    )


def main() -> None:
    settings = Settings()
    setup_logging("gateway", settings.log_level)
    uvicorn.Server(uvicorn_config(settings)).run()


if __name__ == "__main__":
    main()
