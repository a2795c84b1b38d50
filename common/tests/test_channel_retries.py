"""Channels retry UNAVAILABLE only for reads (svc_common.grpc_client): a call that reaches a
provider or moves money is never sent twice by the channel."""

from __future__ import annotations

import json
from typing import Any

import pytest

from svc_common.grpc_client import CHANNEL_OPTIONS


def _service_config() -> dict[str, Any]:
    options = dict(CHANNEL_OPTIONS)
    config: dict[str, Any] = json.loads(str(options["grpc.service_config"]))
    return config


def _method_config(service: str, method: str) -> dict[str, Any] | None:
    """The methodConfig gRPC applies to /service/method: an exact name first, then the
    service's, then the default ({})."""
    by_precedence: list[dict[str, Any] | None] = [None, None, None]
    for entry in _service_config().get("methodConfig", []):
        for name in entry["name"]:
            if name.get("service") == service and name.get("method") == method:
                by_precedence[0] = entry
            elif name.get("service") == service and not name.get("method"):
                by_precedence[1] = entry
            elif not name.get("service"):
                by_precedence[2] = entry
    return next((entry for entry in by_precedence if entry is not None), None)


@pytest.mark.parametrize(
    ("service", "method"),
    [
        ("text.v1.TextService", "Generate"),
        ("text.v1.TextService", "GenerateStream"),
        ("billing.v1.BillingService", "Reserve"),
        ("billing.v1.BillingService", "Release"),
        ("billing.v1.BillingService", "Grant"),
        ("settings.v1.SettingsService", "PutConfig"),
        ("settings.v1.SettingsService", "DeleteConfig"),
        ("settings.v1.SettingsService", "SetApiKey"),
        ("settings.v1.SettingsService", "DeleteApiKey"),
        # A method added later is not retried until someone decides it may be.
        ("image.v1.ImageService", "Generate"),
    ],
)
def test_calls_that_reach_a_provider_or_move_money_are_not_retried(
    service: str, method: str
) -> None:
    config = _method_config(service, method)
    assert config is None or "retryPolicy" not in config


@pytest.mark.parametrize(
    ("service", "method"),
    [
        ("settings.v1.SettingsService", "ResolveConfig"),
        ("settings.v1.SettingsService", "GetConfigs"),
        ("billing.v1.BillingService", "GetBalance"),
        ("text.v1.TextService", "ListModels"),
    ],
)
def test_idempotent_reads_are_retried_on_unavailable_only(service: str, method: str) -> None:
    config = _method_config(service, method)
    assert config is not None
    assert config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_transparent_retries_stay_on() -> None:
    assert dict(CHANNEL_OPTIONS).get("grpc.enable_retries") == 1
