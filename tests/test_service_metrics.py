"""Metrics from every service: each gRPC service's metrics port (<PREFIX>METRICS_PORT) exposes
the calls it served and made per method and status, what it adds (provider attempts, settings
cache, credit leases, billing consumer), and never a user id or a key in any label."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from harness import USER_OPENAI_KEY, Platform, running_platform
from prometheus_client.parser import text_string_to_metric_families

MESSAGES = [{"role": "user", "content": "count for me"}]
SERVICES = ("SETTINGS_SVC", "BILLING_SVC", "TEXT_SVC", "MULTIMODAL_SVC", "IMAGE_SVC")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def metered(
    database_url: str, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Platform, dict[str, int]]]:
    ports = {service: free_port() for service in SERVICES}
    for service, port in ports.items():
        monkeypatch.setenv(f"{service}_METRICS_PORT", str(port))
    async with running_platform(database_url, redis_url, redis_prefix) as platform:
        yield platform, ports


async def scrape(port: int) -> tuple[str, Samples]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def count(samples: Samples, name: str, **labels: str) -> float:
    """The sum over samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def test_every_service_exposes_its_calls_and_no_user_id_or_key(
    metered: tuple[Platform, dict[str, int]],
) -> None:
    platform, ports = metered
    byok_user = f"planted-byok-{uuid.uuid4().hex[:8]}"
    member = f"planted-member-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        response = await http.put(
            "/api/settings/llm/text",
            json={"provider": "openai", "model": "gpt-4o", "mode": "byok"},
            headers=platform.auth(byok_user),
        )
        assert response.status_code == 200, response.text
        response = await http.put(
            "/api/settings/llm/text/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth(byok_user),
        )
        assert response.status_code == 200, response.text
    await platform.client(byok_user).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    await platform.client(byok_user).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    await platform.grant(member, 5_000_000)
    await platform.client(member).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=16
    )

    served = {
        "SETTINGS_SVC": ("settings.v1.SettingsService", "ResolveConfig"),
        # The member request opened its user's credit lease (text-svc's default) instead of
        # a Reserve.
        "BILLING_SVC": ("billing.v1.BillingService", "OpenLease"),
        "TEXT_SVC": ("text.v1.TextService", "Generate"),
    }
    for service, port in ports.items():
        text, samples = await scrape(port)
        assert byok_user not in text and member not in text, service
        assert USER_OPENAI_KEY not in text, service
        for family in ("grpc_server_in_flight", "grpc_server_handling_seconds_count"):
            assert any(name == family for name, _ in samples), (service, family)
        if service in served:
            grpc_service, method = served[service]
            labels = {"grpc_service": grpc_service, "grpc_method": method, "grpc_code": "OK"}
            assert count(samples, "grpc_server_handled_total", **labels) >= 1, service
        else:  # the model services not called here list their methods, at zero
            assert any(
                name == "grpc_server_in_flight"
                and dict(ls)["grpc_service"].startswith(service.split("_")[0].lower())
                for name, ls in samples
            ), service

    _, samples = await scrape(ports["TEXT_SVC"])
    # text-svc's calls to settings-svc and billing-svc, by method and status.
    resolve = {"grpc_service": "settings.v1.SettingsService", "grpc_method": "ResolveConfig"}
    assert count(samples, "grpc_client_handled_total", **resolve, grpc_code="OK") >= 1
    open_lease = {"grpc_service": "billing.v1.BillingService", "grpc_method": "OpenLease"}
    assert count(samples, "grpc_client_handled_total", **open_lease, grpc_code="OK") >= 1
    # The provider, per model; the settings cache (the second BYOK request was a hit).
    attempts = {"provider": "openai", "model": "gpt-4o", "outcome": "ok"}
    assert count(samples, "provider_attempt_seconds_count", **attempts) >= 2
    lookups = {"backend_type": "text"}
    # The member request's worst case came from a credit lease this process opened.
    leases = {"backend_type": "text"}
    assert count(samples, "credit_lease_opens_total", **leases, result="opened") >= 1
    assert count(samples, "credit_lease_debits_total", **leases, result="lease") >= 1
    assert any(name == "credit_leases_open" for name, _ in samples)
    assert count(samples, "settings_config_cache_lookups_total", **lookups, result="hit") >= 1
    assert count(samples, "settings_config_cache_lookups_total", **lookups, result="miss") >= 1
    # The gateway's /metrics: its own requests, and its calls to the services.
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        gateway = await http.get("/metrics")
    assert byok_user not in gateway.text and USER_OPENAI_KEY not in gateway.text
    gateway_samples: Samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(gateway.text)
        for sample in family.samples
    }
    settings_calls = {"grpc_service": "settings.v1.SettingsService", "grpc_code": "OK"}
    assert count(gateway_samples, "grpc_client_handled_total", **settings_calls) >= 2
    _, samples = await scrape(ports["BILLING_SVC"])
    assert count(samples, "billing_hold_sweeps_total", result="ok") >= 1
    assert any(name == "billing_usage_consumer_lag" for name, _ in samples)
