"""python -m text_svc: read TEXT_SVC_* settings, serve until SIGTERM, shut down gracefully."""

from __future__ import annotations

from svc_common.lifecycle import run, serve
from svc_common.logging import setup_logging
from svc_common.telemetry import setup_tracing
from text_svc.environment import Settings
from text_svc.server import create_server


def main() -> int:
    settings = Settings()
    setup_logging("text-svc", settings.log_level)
    setup_tracing("text-svc")
    return run(serve(lambda: create_server(settings)))


if __name__ == "__main__":
    raise SystemExit(main())
