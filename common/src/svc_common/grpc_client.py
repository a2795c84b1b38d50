"""Channels to other services: tracing, keepalive, and retries only where a retry cannot repeat
work.

gRPC's transparent retries (the call never left this client, or the server never saw it) are on
for every method. Beyond those, UNAVAILABLE is retried only for reads: a server may answer
UNAVAILABLE after it did the work (text-svc does so for a provider outage after it has called the
provider), so retrying a call that reaches a provider or moves money would repeat both.
"""

from __future__ import annotations

import json

import grpc

from svc_common.telemetry import client_interceptors

# Idempotent reads, by service: retried on UNAVAILABLE. Anything not named here (text.v1
# Generate/GenerateStream, billing.v1 Reserve/Release/Grant, settings.v1 writes) is not.
RETRIED_READS: dict[str, tuple[str, ...]] = {
    "settings.v1.SettingsService": ("ResolveConfig", "GetConfig", "GetConfigs", "ListPresets"),
    "billing.v1.BillingService": ("GetBalance", "ListUsage"),
    "text.v1.TextService": ("ListModels", "CheckStatus"),
}

_READ_RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in RETRIED_READS.items()
                    for method in methods
                ],
                "retryPolicy": _READ_RETRY_POLICY,
            }
        ]
    }
)

CHANNEL_OPTIONS = [
    ("grpc.service_config", SERVICE_CONFIG),
    # Also keeps transparent retries on (calls that never reached the server).
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
]


def channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target, options=CHANNEL_OPTIONS, interceptors=client_interceptors()
    )
