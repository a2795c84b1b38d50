"""One trace per request: gateway → gRPC → text-svc → the provider's HTTP call (W3C propagation)."""

from __future__ import annotations

import pytest
from harness import running_platform
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from svc_common.telemetry import add_span_processor, setup_tracing


@pytest.fixture
def spans() -> InMemorySpanExporter:
    setup_tracing("tests", force=True)
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_one_trace_spans_every_hop(
    spans: InMemorySpanExporter, database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with running_platform(
        database_url, redis_url, redis_prefix, gateway={"tracing": True}
    ) as platform:
        await platform.grant("alice", 1_000_000)
        spans.clear()
        await platform.client("alice").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "trace me"}]
        )
        finished = spans.get_finished_spans()
    gateway_span = next(s for s in finished if s.name == "POST /api/text-proxy/v1/chat/completions")
    in_trace = [s for s in finished if s.context.trace_id == gateway_span.context.trace_id]
    by_id = {s.context.span_id: s for s in in_trace}

    def parent_of(span):
        return by_id[span.parent.span_id] if span.parent else None

    generate = next(s for s in in_trace if s.name == "/text.v1.TextService/Generate")
    assert parent_of(generate) is gateway_span
    upstream = next(s for s in in_trace if s.kind.name == "CLIENT" and s.name == "POST")
    assert upstream.attributes["http.url"] == f"{platform.openai.base_url}/v1/chat/completions"
    assert parent_of(upstream) is generate
    names = {s.name for s in in_trace}
    assert {
        "/settings.v1.SettingsService/ResolveConfig",
        # The user's first member request opens their credit lease (text-svc's default).
        "/billing.v1.BillingService/OpenLease",
    } <= names
