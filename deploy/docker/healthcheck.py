"""The image's HEALTHCHECK: the same checks as the Kubernetes probes, for docker and compose.

One image runs every service, so the check reads which one this container runs from its command
(/proc/1/cmdline, `python -m <module> [command]`): the gateway answers GET /healthz, a gRPC
service answers grpc.health.v1 Check with SERVING. One-shot commands (migrate, grant,
rotate-keys) have nothing to check. Exit 0: healthy; 1: not.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

# The module each gRPC service runs as, and the environment prefix of its settings.
GRPC_SERVICES = {
    "text_svc": "TEXT_SVC",
    "multimodal_svc": "MULTIMODAL_SVC",
    "image_svc": "IMAGE_SVC",
    "settings_svc": "SETTINGS_SVC",
    "billing_svc": "BILLING_SVC",
}
TIMEOUT_S = 2.5


def service_command(cmdline: Path = Path("/proc/1/cmdline")) -> tuple[str, list[str]]:
    """The module this container runs (its first process) and the arguments after it."""
    argv = cmdline.read_bytes().decode().split("\0")
    if "-m" in argv:
        rest = [a for a in argv[argv.index("-m") + 1 :] if a]
        if rest:
            return rest[0], rest[1:]
    return "", []


def check_gateway() -> bool:
    port = os.environ.get("GATEWAY_PORT", "8080")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as reply:
        return bool(reply.status == 200)


def check_grpc(prefix: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = os.environ.get(f"{prefix}_LISTEN", "").rpartition(":")[2]
    if not port.isdigit() or port == "0":
        return False
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main() -> int:
    module, args = service_command()
    if args and args[0] != "serve":
        return 0
    try:
        if module == "gateway":
            return 0 if check_gateway() else 1
        if module in GRPC_SERVICES:
            return 0 if check_grpc(GRPC_SERVICES[module]) else 1
    except Exception as err:  # any failure to answer is unhealthy; say why in docker inspect
        sys.stderr.write(f"unhealthy: {type(err).__name__}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
