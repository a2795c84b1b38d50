"""SIGTERM: requests in flight get as long as the longest call may last, plus a margin."""

from __future__ import annotations

import pytest

from gateway.__main__ import uvicorn_config

from .conftest import gateway_settings


def test_streams_in_flight_get_the_longest_deadline_plus_a_margin_by_default() -> None:
    config = uvicorn_config(gateway_settings())
    assert config.timeout_graceful_shutdown == 125  # 120 s upstream deadline + 5 s
    config = uvicorn_config(gateway_settings(upstream_deadline_s=300))
    assert config.timeout_graceful_shutdown == 305


def test_the_grace_period_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_GRACE_SECONDS", "42")
    assert uvicorn_config(gateway_settings()).timeout_graceful_shutdown == 42
