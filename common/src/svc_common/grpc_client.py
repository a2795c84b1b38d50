"""Channels to other services: tracing, keepalive, and retries of UNAVAILABLE only."""

from __future__ import annotations

import json

import grpc

from svc_common.telemetry import client_interceptors

# Only UNAVAILABLE is retried: the call never reached a handler, so nothing was done twice.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
]


def channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target, options=CHANNEL_OPTIONS, interceptors=client_interceptors()
    )
