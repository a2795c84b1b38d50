"""Prometheus metrics: requests by route and status, latency by route; one registry per app.
/metrics also shows the process' own registry (svc_common.metrics): the gateway's calls to the
services by method and status, and its CPU and memory."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from svc_common.metrics import REGISTRY as PROCESS_REGISTRY

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
)  # fmt: skip

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time until the response was complete (a whole stream included)",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.streams = Gauge(
            "gateway_streams_in_flight",
            "Chat completion streams being sent",
            registry=self.registry,
        )
        # Labelled children looked up once: .labels() takes a lock and builds a tuple per call.
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._latency_children: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._latency_children.get((method, route))
        if histogram is None:
            histogram = self._latency_children[(method, route)] = self.latency.labels(method, route)
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(PROCESS_REGISTRY)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # The route template, never the raw path: label values must stay few.
            label = getattr(route, "path_format", None) or "unmatched"
            self.metrics.observe(scope["method"], label, status, time.perf_counter() - start)
