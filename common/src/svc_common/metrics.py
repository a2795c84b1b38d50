"""Prometheus metrics of a service process: gRPC calls served and made (per method and status),
and the metrics port that exposes them with what each service adds (billing, providers, caches).

One registry per process (`REGISTRY`, prometheus_client's default: it also carries the process'
CPU and memory). Labels are fixed vocabularies — service, method, status code, provider, model,
backend type — never a user id, a request id or a key.

The hot path is kept short: a method's children (`.labels(...)` looks up a dict under a lock)
are bound once, when its handler is wrapped or its stub built, and a call then costs a gauge
inc/dec, one counter and one histogram observation (bench: `python -m bench.grpc_metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import REGISTRY as _DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

__all__ = [
    "LATENCY_BUCKETS",
    "REGISTRY",
    "SETTINGS_CACHE_LOOKUPS",
    "MethodMetrics",
    "MetricsServer",
    "client_method",
    "server_method",
    "split_method",
]

REGISTRY: CollectorRegistry = _DEFAULT_REGISTRY

# From a cached settings lookup (sub-millisecond) to a whole model stream (minutes).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10, 30, 60, 120, 300,
)  # fmt: skip

_METHOD_LABELS = ("grpc_type", "grpc_service", "grpc_method")

_SERVER_HANDLED = Counter(
    "grpc_server_handled",
    "gRPC calls this process completed as a server, by method and status code",
    [*_METHOD_LABELS, "grpc_code"],
    registry=REGISTRY,
)
_SERVER_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time a served call took, a whole response stream included",
    _METHOD_LABELS,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
_SERVER_IN_FLIGHT = Gauge(
    "grpc_server_in_flight",
    "gRPC calls being served",
    _METHOD_LABELS,
    registry=REGISTRY,
)
_CLIENT_HANDLED = Counter(
    "grpc_client_handled",
    "gRPC calls this process made to other services, by method and status code",
    [*_METHOD_LABELS, "grpc_code"],
    registry=REGISTRY,
)
_CLIENT_SECONDS = Histogram(
    "grpc_client_handling_seconds",
    "Time a call to another service took, until its status (a whole stream included)",
    _METHOD_LABELS,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
_CLIENT_IN_FLIGHT = Gauge(
    "grpc_client_in_flight",
    "gRPC calls to other services not yet ended",
    _METHOD_LABELS,
    registry=REGISTRY,
)


# svc_common.config_resolution: resolved configs answered from the cache or asked of settings-svc.
SETTINGS_CACHE_LOOKUPS = Counter(
    "settings_config_cache_lookups",
    "Config lookups of a model service, by backend type and result (hit: from its cache)",
    ["backend_type", "result"],
    registry=REGISTRY,
)


def split_method(method: str) -> tuple[str, str]:
    """'/text.v1.TextService/Generate' -> ('text.v1.TextService', 'Generate')."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class MethodMetrics:
    """The children of one method's families, bound once; `begin` / `end` around each call."""

    __slots__ = ("_handled", "_handled_family", "_labels", "in_flight", "seconds")

    def __init__(self, handled: Counter, seconds: Histogram, in_flight: Gauge, labels: Any) -> None:
        self._labels: tuple[str, str, str] = labels
        self._handled_family = handled
        # One child per status code, added the first time the method ends with that code.
        self._handled: dict[grpc.StatusCode, Any] = {}
        self.seconds = seconds.labels(*labels)
        self.in_flight = in_flight.labels(*labels)

    def begin(self) -> float:
        self.in_flight.inc()
        return time.perf_counter()

    def end(self, code: grpc.StatusCode | None, started: float) -> None:
        self.seconds.observe(time.perf_counter() - started)
        self.in_flight.dec()
        code = code or grpc.StatusCode.UNKNOWN
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = self._handled_family.labels(*self._labels, code.name)
        handled.inc()

    def ended(self, started: float) -> Callable[[Any], None]:
        """A done callback for a client call: ends it with the call's own status."""

        def done(call: Any) -> None:
            self.end(_finished_code(call), started)

        return done


def _finished_code(call: Any) -> grpc.StatusCode | None:
    """The status of a call that has ended. grpc.aio offers it only as a coroutine; once the
    call is done that coroutine completes without suspending, so it is run to its end here
    rather than in a task per call. Should it ever suspend, the code counts as UNKNOWN."""
    steps = call.code()
    try:
        steps.send(None)
    except StopIteration as finished:
        code: grpc.StatusCode = finished.value
        return code
    steps.close()
    return None


def _grpc_type(kind: str) -> str:
    return {"unary_unary": "unary", "unary_stream": "server_stream"}.get(kind, kind)


def server_method(method: str, kind: str) -> MethodMetrics:
    service, name = split_method(method)
    return MethodMetrics(
        _SERVER_HANDLED, _SERVER_SECONDS, _SERVER_IN_FLIGHT, (_grpc_type(kind), service, name)
    )


def client_method(method: str, kind: str) -> MethodMetrics:
    service, name = split_method(method)
    return MethodMetrics(
        _CLIENT_HANDLED, _CLIENT_SECONDS, _CLIENT_IN_FLIGHT, (_grpc_type(kind), service, name)
    )


class MetricsServer:
    """The metrics port: prometheus_client's HTTP server on its own thread, so a scrape never
    waits for the event loop (nor the loop for a scrape's rendering beyond the GIL)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = self._server.server_port

    def close(self) -> None:
        """Stop serving (blocks up to the server's poll interval, half a second)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
