"""docker-compose.yml, checked statically: every service gets the settings and tokens it needs
(judged by its own Settings class, as in production), no secret has a public default, images and
commands exist, health checks and `depends_on: service_healthy` are in place, and the monitoring
profile's files are there."""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from svc_common.auth import mint_service_token
from svc_common.environment import KNOWN_PUBLIC_SECRETS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# The platform's services: the module `python -m` runs, and its Settings class.
PLATFORM = {
    "gateway": ("gateway", "gateway.environment"),
    "text-svc": ("text_svc", "text_svc.environment"),
    "settings-svc": ("settings_svc", "settings_svc.environment"),
    "billing-svc": ("billing_svc", "billing_svc.environment"),
    "multimodal-svc": ("multimodal_svc", "multimodal_svc.environment"),
    "image-svc": ("image_svc", "image_svc.environment"),
}
MONITORING = ("prometheus", "grafana", "otel-collector", "jaeger")
# Nothing waits for the collector, and its image has no tool to run a check with.
NO_HEALTHCHECK = {"otel-collector"}
_REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _operator_values() -> dict[str, str]:
    """What an operator sets before `docker compose up`: fresh secrets, tokens minted from them."""
    secret = secrets.token_urlsafe(32)
    return {
        "SERVICE_TOKEN_SECRET": secret,
        "JWT_HS256_SECRET": secrets.token_urlsafe(32),
        "ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "TEXT_SVC_SERVICE_TOKEN": mint_service_token(secret, "text-svc"),
        "MULTIMODAL_SVC_SERVICE_TOKEN": mint_service_token(secret, "multimodal-svc"),
        "IMAGE_SVC_SERVICE_TOKEN": mint_service_token(secret, "image-svc"),
        "IMAGE_URL_SECRET": secrets.token_urlsafe(32),
        "GATEWAY_SERVICE_TOKEN": mint_service_token(secret, "gateway"),
    }


def _interpolate(value: str, given: dict[str, str]) -> str:
    """Compose's `${VAR:?message}` (refuse when unset) and `${VAR:-default}`."""

    def required(match: re.Match[str]) -> str:
        if match[1] not in given:
            raise KeyError(f"compose refuses to start without {match[1]}")
        return given[match[1]]

    value = _REQUIRED.sub(required, value)
    return _DEFAULTED.sub(lambda m: given.get(m[1], m[2]), value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _environment(service: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    return {k: _interpolate(str(v), given) for k, v in (service.get("environment") or {}).items()}


def _settings_class(module: str) -> Any:
    return importlib.import_module(module).Settings


def test_compose_refuses_to_start_without_each_secret(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    required = set(_REQUIRED.findall(text))
    assert required == set(_operator_values()), required
    for name in required:
        given = {k: v for k, v in _operator_values().items() if k != name}
        with pytest.raises(KeyError, match=name):
            for service in compose["services"].values():
                _environment(service, given)


@pytest.mark.parametrize("name", sorted(PLATFORM))
def test_each_service_gets_every_setting_it_needs_in_production(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose["services"][name]
    config = PLATFORM[name][1]
    env = _environment(service, _operator_values())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings_class = _settings_class(config)
    # Validation as in production: refused public or empty secrets, missing JWT key, and so on.
    settings = settings_class()
    assert settings.environment == "production"
    # Every field without a default is set.
    prefix = settings_class.model_config["env_prefix"]
    for field, info in settings_class.model_fields.items():
        if info.is_required():
            assert f"{prefix}{field.upper()}" in env, f"{name}: {prefix}{field.upper()} unset"
    if name == "gateway":
        assert settings.service_token is not None
        assert all(settings.backend_targets().values())
        targets = settings.backend_targets().values()
    else:
        # A gRPC server refuses to start without the secret that verifies its callers.
        assert settings.service_token_secret is not None, f"{name}: no service token secret"
        # Secrets its Settings names (encryption keys...) are set, except a service token that
        # a service calling nobody never presents.
        targets = [v for k, v in settings.model_dump().items() if k.endswith("_target") and v]
        for variable, (_kind, value) in settings.named_secrets().items():
            if variable.endswith("_SERVICE_TOKEN") and not targets:
                continue
            assert value is not None, f"{name}: {variable} unset"
    # Every target names a compose service on the port that service listens on.
    listens = {
        other: str(_environment(s, _operator_values()).get(f"{PLATFORM[other][0].upper()}_LISTEN"))
        for other, s in compose["services"].items()
        if other in PLATFORM and other != "gateway"
    }
    for target in targets:
        host, _, port = str(target).removeprefix("dns:///").rpartition(":")
        assert host in listens and listens[host].endswith(f":{port}"), (name, target)


def test_no_secret_has_a_literal_or_public_value(compose: dict[str, Any]) -> None:
    secretive = re.compile(r"SECRET|TOKEN|KEY|PASSWORD", re.IGNORECASE)
    for name, service in compose["services"].items():
        for key, raw in (service.get("environment") or {}).items():
            value = str(raw)
            if secretive.search(key) and not key.startswith("GF_"):
                assert value.startswith("${"), f"{name}: {key} is written in the file"
                assert (
                    _DEFAULTED.fullmatch(value) is None or _DEFAULTED.fullmatch(value)[2] == ""
                ), f"{name}: {key} has a default"
            assert value.strip().lower() not in KNOWN_PUBLIC_SECRETS, f"{name}: {key}"
            if "://" in value and "@" in value:  # a URL with credentials: the password is a ${...}
                credentials = value.split("://", 1)[1].split("@", 1)[0]
                assert ":${" in credentials, f"{name}: {key} spells a password"


@pytest.mark.parametrize("name", sorted(PLATFORM))
def test_platform_services_build_the_image_and_run_a_real_module(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    assert (ROOT / service["build"] / "Dockerfile").is_file()
    command = service["command"]
    assert command[:2] == ["python", "-m"] and command[2] == PLATFORM[name][0], command
    assert importlib.util.find_spec(f"{command[2]}.__main__") is not None, command


def test_every_image_is_pinned_and_every_long_running_service_is_checked(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        if "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image} not pinned"
        check = (service.get("healthcheck") or {}).get("test")
        if name in NO_HEALTHCHECK:
            assert check == ["NONE"], name
            continue
        assert check and check[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in compose["services"], (name, dependency)
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def test_the_data_lives_in_volumes_and_redis_keeps_an_append_only_file(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert {"postgres-data", "redis-data"} <= set(compose["volumes"])


def test_the_monitoring_profile_scrapes_the_platform_and_has_its_files(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in MONITORING:
        assert services[name].get("profiles") == ["monitoring"], name
    for name in PLATFORM:
        assert "profiles" not in services[name], name
    for name in MONITORING:
        for mount in services[name].get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
    prometheus = yaml.safe_load((ROOT / "deploy/monitoring/prometheus.yml").read_text())
    scraped = {
        (name, sd["port"])
        for job in prometheus["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    assert ("gateway", 8080) in scraped
    dashboard = json.loads(
        (ROOT / "deploy/monitoring/grafana/dashboards/platform.json").read_text()
    )
    assert dashboard["panels"] and all(p["targets"][0]["expr"] for p in dashboard["panels"])
    collector = yaml.safe_load((ROOT / "deploy/monitoring/otel-collector.yml").read_text())
    assert collector["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]
