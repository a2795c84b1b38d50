"""The setting types every service shares: comma-separated lists and host allow-lists read the
same way in every service, and a model service's operator providers are looked up by name."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from svc_common.environment import CommaList, HostList, ModelServiceSettings


class _Settings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SHAPES_SVC_", extra="ignore")
    KNOWN_PROVIDERS: ClassVar[tuple[str, ...]] = ("acme",)

    acme_base_url: str = "https://acme.example"
    acme_api_key: SecretStr | None = None
    names: CommaList = Field(default_factory=list)
    hosts: HostList = Field(default_factory=list)


def test_comma_separated_settings_drop_blanks_and_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAPES_SVC_NAMES", " a, b,,c ,")
    monkeypatch.setenv("SHAPES_SVC_HOSTS", "[::1], LocalHost., ")
    monkeypatch.setenv("SHAPES_SVC_ALLOWED_BASE_URL_HOSTS", "Ollama.Internal.")
    settings = _Settings(environment="development")
    assert settings.names == ["a", "b", "c"]
    assert settings.hosts == ["::1", "localhost"]
    assert settings.allowed_base_url_hosts == ["ollama.internal"]
    assert _Settings(environment="development", names=["x ", " "]).names == ["x"]


def test_operator_providers_are_looked_up_by_name_only_when_known() -> None:
    settings = _Settings(environment="development", acme_api_key=SecretStr("k-1"))
    assert settings.operator_base_url("acme") == "https://acme.example"
    assert settings.platform_key("acme") == "k-1"
    assert settings.operator_base_url("other") == ""
    assert settings.platform_key("other") == ""
    assert _Settings(environment="development").platform_key("acme") == ""


def test_a_redis_url_is_a_secret_and_empty_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAPES_SVC_REDIS_URL", "redis://:hunter2-password@cache:6379/0")
    settings = _Settings(environment="development")
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://:hunter2-password@cache:6379/0"
    assert "hunter2" not in repr(settings)
    monkeypatch.setenv("SHAPES_SVC_REDIS_URL", "")
    assert _Settings(environment="development").redis_url is None


@pytest.mark.parametrize(
    ("prefix", "settings_class", "default_max"),
    [
        ("BILLING_SVC_", "billing_svc.environment:Settings", 10),
        ("SETTINGS_SVC_", "settings_svc.environment:Settings", 8),
    ],
)
def test_data_services_name_their_pool_bounds_the_same(
    monkeypatch: pytest.MonkeyPatch, prefix: str, settings_class: str, default_max: int
) -> None:
    import importlib

    module, _, name = settings_class.partition(":")
    settings_type = getattr(importlib.import_module(module), name)
    assert settings_type(environment="development").db_pool_max_size == default_max
    monkeypatch.setenv(f"{prefix}DB_POOL_MIN_SIZE", "2")
    monkeypatch.setenv(f"{prefix}DB_POOL_MAX_SIZE", "5")
    settings = settings_type(environment="development")
    assert (settings.db_pool_min_size, settings.db_pool_max_size) == (2, 5)
    assert isinstance(settings.database_url, SecretStr)
    # The old single name is refused (naming its replacement), not silently ignored.
    monkeypatch.setenv(f"{prefix}DB_POOL_SIZE", "5")
    with pytest.raises(ValueError, match=f"{prefix}DB_POOL_MAX_SIZE"):
        settings_type(environment="development")
