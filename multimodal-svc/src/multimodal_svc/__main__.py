"""python -m multimodal_svc: read MULTIMODAL_SVC_* settings, serve until SIGTERM, shut down
gracefully."""

from __future__ import annotations

from multimodal_svc.environment import Settings
from multimodal_svc.server import create_server
from svc_common.lifecycle import run, serve
from svc_common.logging import setup_logging
from svc_common.telemetry import setup_tracing


def main() -> int:
    settings = Settings()
    setup_logging("multimodal-svc", settings.log_level)
    setup_tracing("multimodal-svc")
    return run(serve(lambda: create_server(settings)))


if __name__ == "__main__":
    raise SystemExit(main())
