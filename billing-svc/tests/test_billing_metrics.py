"""billing-svc's metrics port: the consumer group's lag and pending entries and the dead-letter
stream move as usage events are published, read, applied and dead-lettered; settlement time and
the gRPC calls served are there too, with no user id in any label."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from billing_test_support import Billing, usage_event, wait_for
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PLANTED_USER = f"planted-billing-user-{uuid.uuid4().hex[:6]}"


async def scrape(billing: Billing) -> tuple[str, Samples]:
    port = billing.server.metrics_port
    assert port
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize(
    "settings_overrides", [{"run_consumer": False, "metrics_port": 0, "metrics_interval_s": 0.05}]
)
async def test_lag_pending_and_dead_letters_move_with_the_stream(billing: Billing) -> None:
    await billing.grant(PLANTED_USER, 1_000_000)
    consumer = billing.consumer()
    await consumer.ensure_group()
    _, before = await scrape(billing)
    for _ in range(3):
        await billing.publish(usage_event(PLANTED_USER))

    await consumer.observe_stream()
    _, published = await scrape(billing)
    assert value(published, "billing_usage_consumer_lag") == 3
    assert value(published, "billing_usage_pending_entries") == 0

    # Another consumer of the group reads two and has not applied them yet.
    settings = billing.settings
    await billing.redis.xreadgroup(
        settings.consumer_group, "elsewhere", {settings.usage_stream: ">"}, count=2
    )
    await consumer.observe_stream()
    _, read = await scrape(billing)
    assert value(read, "billing_usage_consumer_lag") == 1
    assert value(read, "billing_usage_pending_entries") == 2

    # A malformed entry, then the consumer runs: it applies the rest and dead-letters that one.
    await billing.redis.xadd(settings.usage_stream, {"event_id": "req-bad", "mode": "member"})
    running = billing.consumer(claim_idle_ms=1, metrics_interval_s=0.05)
    task = asyncio.create_task(running.run())
    try:

        async def drained() -> bool:
            _, now = await scrape(billing)
            return (
                value(now, "billing_usage_consumer_lag") == 0
                and value(now, "billing_usage_pending_entries") == 0
                and value(now, "billing_usage_dead_letter_entries") == 1
            )

        await wait_for(drained, what="lag, pending 0 and one dead letter")
    finally:
        running.stop()
        await task
    text, after = await scrape(billing)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("billing_usage_dead_lettered_total", reason="invalid") == 1
    assert delta("billing_usage_events_applied_total", result="new") == 3
    assert delta("billing_settlement_seconds_count") >= 1
    grant = {"grpc_type": "unary", "grpc_service": "billing.v1.BillingService"}
    assert value(after, "grpc_server_handled_total", **grant, grpc_method="Grant", grpc_code="OK")
    assert PLANTED_USER not in text
