"""python -m gateway: serve with uvicorn (uvloop, httptools) on GATEWAY_HOST:GATEWAY_PORT."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.config import Settings
from gateway.server import server_config
from svc_common.logging import setup_logging


def main() -> None:
    settings = Settings()
    setup_logging("gateway", settings.log_level)
    config = server_config(
        create_app(settings),
        settings,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        # uvicorn's own logging config would replace the JSON logs set up above.
        log_config=None,
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
