"""Settings every service shares; each service subclasses ServiceSettings with its env prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Base for each service's Settings. Subclasses set `env_prefix` (e.g. "TEXT_SVC_")."""

    model_config = SettingsConfigDict(extra="ignore")

    # development relaxes what must be configured (e.g. settings-svc's encryption key);
    # never use it in production.
    environment: Literal["development", "test", "production"] = "production"
    log_level: str = "INFO"
    # host:port to listen on; port 0 picks a free port (tests).
    listen: str = "127.0.0.1:0"
    # Verifies service tokens presented by callers (see svc_common.auth). Required to accept calls.
    service_token_secret: SecretStr | None = None
    # This service's own token, sent on calls to other services.
    service_token: SecretStr | None = None
    grace_seconds: float = 10.0
