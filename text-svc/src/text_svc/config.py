"""text-svc configuration, read from TEXT_SVC_* environment variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from svc_common import settings_changes
from svc_common.addresses import normalise_hosts
from svc_common.config import ServiceSettings
from svc_common.usage_events import STREAM

# Providers whose base URL and platform key the operator configures here, by provider name.
# Any other provider name in a config is an OpenAI-compatible server and needs a config base_url.
KNOWN_PROVIDERS = ("openai", "anthropic", "ollama", "lmstudio", "vllm", "openai_compatible")


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TEXT_SVC_", extra="ignore")

    # Upstream providers (operator configuration). Platform keys are used in member mode only.
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_api_key: SecretStr | None = None
    ollama_base_url: str = "http://127.0.0.1:11434"  # native API; its OpenAI API is <this>/v1
    lmstudio_base_url: str = "http://127.0.0.1:1234/v1"
    vllm_base_url: str = "http://127.0.0.1:8000/v1"
    # A generic OpenAI-compatible server (provider name "openai_compatible"); its key is optional.
    openai_compatible_base_url: str = ""
    openai_compatible_api_key: SecretStr | None = None

    # Comma-separated hosts a user's base URL may name although they resolve to loopback/private
    # addresses: the same list as SETTINGS_SVC_ALLOWED_BASE_URL_HOSTS, enforced here again at
    # every connection (a host taken off the list stops working at once for saved configs too).
    allowed_base_url_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    # Time to the first output (for a non-streamed call: to the whole answer).
    upstream_timeout_s: float = Field(default=120.0, gt=0)
    # Longest silence between two streamed chunks.
    upstream_idle_timeout_s: float = Field(default=60.0, gt=0)
    # Retries of 429/5xx/529/connection errors, only before any output was received.
    max_retries: int = Field(default=2, ge=0)
    # A retry-after longer than this is not waited for: the caller gets the 429 with the hint.
    max_retry_wait_s: float = Field(default=10.0, ge=0)
    # Output cap when a request names none. Member mode always sends it to the provider, so the
    # hold's worst case holds.
    default_max_tokens: int = Field(default=4096, ge=1)
    # The largest max_tokens a request may ask for.
    max_tokens_limit: int = Field(default=131_072, ge=1)

    # The config every caller gets when settings-svc is not configured (settings_target empty).
    default_provider: str = "openai"
    default_model: str = "gpt-4o-mini"
    # Comma-separated; empty: only default_model.
    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # "provider:model" or "model": tried once when the primary fails before any output.
    fallback: str = ""

    # settings-svc address (host:port); empty: every caller gets the operator defaults above.
    settings_target: str = ""
    # billing-svc address; empty: member mode runs without credit holds (development only).
    billing_target: str = ""
    # Redis for usage events and settings-change messages; empty: no usage events are published.
    redis_url: str = ""
    usage_stream: str = STREAM
    settings_changed_channel: str = settings_changes.CHANNEL
    config_cache_ttl_s: float = Field(default=30.0, ge=0)
    # Deadline for calls to settings-svc and billing-svc.
    internal_call_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [str(m).strip() for m in value if str(m).strip()]
        return value

    @field_validator("allowed_base_url_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return normalise_hosts(str(h) for h in value)
        return value

    def operator_base_url(self, provider: str) -> str:
        """The operator's base URL for a provider; empty when the operator configured none."""
        return str(getattr(self, f"{provider}_base_url", "")) if provider in KNOWN_PROVIDERS else ""

    def platform_key(self, provider: str) -> str:
        """The platform's key for a provider (member mode); empty when there is none."""
        if provider not in KNOWN_PROVIDERS:
            return ""
        secret: SecretStr | None = getattr(self, f"{provider}_api_key", None)
        return secret.get_secret_value() if secret is not None else ""
