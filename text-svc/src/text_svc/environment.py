"""text-svc configuration, read from TEXT_SVC_* environment variables."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from svc_common.environment import CommaList, ModelServiceSettings

# Providers whose base URL and platform key the operator configures here, by provider name.
# Any other provider name in a config is an OpenAI-compatible server and needs a config base_url.
KNOWN_PROVIDERS = ("openai", "anthropic", "ollama", "lmstudio", "vllm", "openai_compatible")


class Settings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TEXT_SVC_", extra="ignore")
    KNOWN_PROVIDERS: ClassVar[tuple[str, ...]] = KNOWN_PROVIDERS

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

    # Time to the first output (for a non-streamed call: to the whole answer).
    upstream_timeout_s: float = Field(default=120.0, gt=0)
    # Longest silence between two streamed chunks.
    upstream_idle_timeout_s: float = Field(default=60.0, gt=0)
    # Retries of 429/5xx/529/connection errors, only before any output was received.
    max_retries: int = Field(default=2, ge=0)
    # Output cap when a request names none. Member mode always sends it to the provider, so the
    # hold's worst case holds.
    default_max_tokens: int = Field(default=4096, ge=1)
    # The largest max_tokens a request may ask for.
    max_tokens_limit: int = Field(default=131_072, ge=1)

    # The config every caller gets when settings-svc is not configured (settings_target empty),
    # with default_provider.
    default_model: str = "gpt-4o-mini"
    # Empty: only default_model.
    models: CommaList = Field(default_factory=list)
    # "provider:model" or "model": tried once when the primary fails before any output.
    fallback: str = ""

    # Member requests debit a credit lease billing-svc set aside for this process (one per user
    # and routes) instead of a Reserve hop each; false: a hold per request.
    credit_lease: bool = True
