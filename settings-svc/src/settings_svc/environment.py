"""settings-svc configuration, read from SETTINGS_SVC_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from svc_common import settings_changes
from svc_common.environment import DataServiceSettings, HostList


class Settings(DataServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SETTINGS_SVC_", extra="ignore")

    # database_url, db_pool_min_size and migrate_on_start: DataServiceSettings; settings-svc's
    # own default maximum (8) is kept.
    db_pool_max_size: int = Field(default=8, ge=1)

    # Every write publishes "<user_id>:<backend_type>" here so model services drop cached configs.
    # SecretStr: a URL may carry a password (as the database URL).
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    settings_changed_channel: str = settings_changes.CHANNEL

    # Comma-separated `keyid:base64(32 bytes)`; the first encrypts, any listed decrypts (rotation).
    encryption_keys: SecretStr | None = None

    # Comma-separated hosts a user base URL may name even though they resolve to loopback/private
    # addresses (e.g. an operator-run Ollama). Everything else must resolve to public addresses.
    allowed_base_url_hosts: HostList = Field(default_factory=list)
    # Presets change only by migration or operator SQL: re-read this often (and on SIGHUP).
    presets_reload_seconds: float = Field(default=60.0, gt=0)
    # Rows per batch for `rotate-keys` and the legacy carry-over.
    batch_size: int = Field(default=200, ge=1)

    def named_secrets(self) -> dict[str, tuple[str, SecretStr | None]]:
        return {
            **super().named_secrets(),
            "SETTINGS_SVC_ENCRYPTION_KEYS": ("encryption_keys", self.encryption_keys),
        }
