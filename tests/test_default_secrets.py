"""No service starts outside development with an empty or published secret (svc_common.environment
refuse_public_secrets, used by every service's settings)."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from billing_svc.environment import Settings as BillingSettings
from gateway.environment import Settings as GatewaySettings
from settings_svc.environment import Settings as SettingsSettings
from svc_common.auth import mint_service_token
from text_svc.environment import Settings as TextSettings

# The default docker-compose.yml used to give every service.
PUBLISHED_SECRET = "change-me-service-token-secret"
OWN_SECRET = "own-secret-" + "4f1c9a0e7b2d5c8f" * 3
JWT_SECRET = "own-jwt-secret-" + "9e8d7c6b5a4f3e2d" * 3
# settings-svc's fixed development key, as `keyid:base64`.
PUBLIC_DEV_KEY = (
    "dev:"
    + base64.b64encode(
        hashlib.sha256(b"settings-svc development key: never use outside development").digest()
    ).decode()
)
OWN_KEY = "k1:" + base64.b64encode(b"\x07" * 32).decode()

GRPC_SERVICES: list[tuple[type[Any], dict[str, Any]]] = [
    (TextSettings, {}),
    (BillingSettings, {}),
    (SettingsSettings, {"encryption_keys": OWN_KEY}),
]


@pytest.mark.parametrize(("settings_class", "extra"), GRPC_SERVICES)
@pytest.mark.parametrize("secret", ["", "   ", PUBLISHED_SECRET, "CHANGE-ME", "password"])
@pytest.mark.parametrize("environment", ["production", "test"])
def test_grpc_services_refuse_an_empty_or_published_token_secret(
    settings_class: type[Any], extra: dict[str, Any], secret: str, environment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings_class(environment=environment, service_token_secret=secret, **extra)
    assert "SERVICE_TOKEN_SECRET" in str(caught.value)
    if secret.strip():
        assert secret not in str(caught.value)


@pytest.mark.parametrize(("settings_class", "extra"), GRPC_SERVICES)
def test_grpc_services_refuse_a_token_minted_from_a_published_secret(
    settings_class: type[Any], extra: dict[str, Any]
) -> None:
    token = mint_service_token(PUBLISHED_SECRET, "text-svc")
    with pytest.raises(ValidationError) as caught:
        settings_class(service_token_secret=OWN_SECRET, service_token=token, **extra)
    assert "SERVICE_TOKEN " in str(caught.value)
    assert token not in str(caught.value)


@pytest.mark.parametrize(("settings_class", "extra"), GRPC_SERVICES)
def test_own_secrets_are_accepted_and_development_relaxes(
    settings_class: type[Any], extra: dict[str, Any]
) -> None:
    token = mint_service_token(OWN_SECRET, "text-svc")
    settings_class(service_token_secret=OWN_SECRET, service_token=token, **extra)
    settings_class(environment="development", service_token_secret=PUBLISHED_SECRET, **extra)


@pytest.mark.parametrize("keys", ["", PUBLIC_DEV_KEY, f"{OWN_KEY},{PUBLIC_DEV_KEY}"])
def test_settings_svc_refuses_an_empty_or_public_encryption_key(keys: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SettingsSettings(service_token_secret=OWN_SECRET, encryption_keys=keys)
    assert "SETTINGS_SVC_ENCRYPTION_KEYS" in str(caught.value)
    assert PUBLIC_DEV_KEY.partition(":")[2] not in str(caught.value)
    SettingsSettings(environment="development", encryption_keys=keys)


def test_gateway_refuses_a_published_service_token_and_an_empty_jwt_secret() -> None:
    token = mint_service_token(PUBLISHED_SECRET, "gateway")
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(jwt_hs256_secret=JWT_SECRET, service_token=token)
    assert "GATEWAY_SERVICE_TOKEN" in str(caught.value)
    assert token not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(jwt_hs256_secret="", service_token=mint_service_token(OWN_SECRET, "gw"))
    assert "GATEWAY_JWT_HS256_SECRET is empty" in str(caught.value)
    GatewaySettings(jwt_hs256_secret=JWT_SECRET, service_token=mint_service_token(OWN_SECRET, "g"))
    GatewaySettings(environment="development", jwt_hs256_secret=JWT_SECRET, service_token=token)


@pytest.mark.parametrize(
    ("module", "variables"),
    [
        ("text_svc", {"TEXT_SVC_SERVICE_TOKEN_SECRET": PUBLISHED_SECRET}),
        ("billing_svc", {"BILLING_SVC_SERVICE_TOKEN_SECRET": PUBLISHED_SECRET}),
        (
            "settings_svc",
            {
                "SETTINGS_SVC_SERVICE_TOKEN_SECRET": PUBLISHED_SECRET,
                "SETTINGS_SVC_ENCRYPTION_KEYS": OWN_KEY,
            },
        ),
        (
            "gateway",
            {
                "GATEWAY_JWT_HS256_SECRET": JWT_SECRET,
                "GATEWAY_SERVICE_TOKEN": mint_service_token(PUBLISHED_SECRET, "gateway"),
            },
        ),
    ],
)
def test_a_service_started_with_a_published_secret_exits(
    module: str, variables: dict[str, str]
) -> None:
    """What docker-compose.yml used to do: the process stops before it listens, naming the
    variable and not the value."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(tuple(variables))}
    env.update(variables)
    done = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode != 0
    name = next(iter(variables)) if module != "gateway" else "GATEWAY_SERVICE_TOKEN"
    assert f"{name} " in done.stderr
    assert PUBLISHED_SECRET not in done.stderr
    for value in variables.values():
        assert value not in done.stderr
