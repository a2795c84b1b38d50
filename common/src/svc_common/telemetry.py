"""OpenTelemetry: one trace per request across the gateway, gRPC hops and upstream HTTP calls.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT is set (tests force it with their own in-memory
exporter): then spans are created, propagated (W3C traceparent) and exported. Servers and channels
decide when they are built whether to trace, so call setup_tracing before building them.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_installed = False


def tracing_configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup_tracing(
    service_name: str, exporter: SpanExporter | None = None, *, force: bool = False
) -> None:
    """Install the process's tracer provider once (later calls only add an exporter).

    Services call this only when tracing_configured(): without a provider OpenTelemetry's API
    stays a no-op, which keeps span bookkeeping off the hot path when nothing would export it.
    """
    global _installed
    if not (force or exporter is not None or tracing_configured()):
        return
    provider = trace.get_tracer_provider()
    if not _installed:
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(provider)
        _installed = True
        if exporter is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _instrument_http_clients()
    if exporter is not None:
        add_span_processor(BatchSpanProcessor(exporter))


def add_span_processor(processor: SpanProcessor) -> None:
    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "add_span_processor"):
        provider.add_span_processor(processor)


def _instrument_http_clients() -> None:
    # Every upstream provider call goes through aiohttp (upstream.ProviderTransport, one pool
    # per endpoint); no service calls out over httpx, so only aiohttp carries the trace on.
    try:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    except ImportError:  # only services that talk to providers install it
        return
    AioHttpClientInstrumentor().instrument()


def tracer_installed() -> bool:
    """Whether this process records spans (setup_tracing installed the SDK's provider)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


# gRPC interceptors run Python on every call (the server one also builds a new handler per call);
# without a tracer provider their spans are no-ops, so servers and channels built then go without.


def server_interceptors() -> list[Any]:
    if not tracer_installed():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]  # unannotated upstream


def client_interceptors() -> list[Any]:
    if not tracer_installed():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]  # unannotated upstream
