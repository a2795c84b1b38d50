"""multimodal-svc configuration, read from MULTIMODAL_SVC_* environment variables."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from svc_common import settings_changes
from svc_common.addresses import normalise_hosts
from svc_common.config import ServiceSettings
from svc_common.usage_events import STREAM

MIB = 1024 * 1024

# Providers whose base URL and platform key the operator configures here, by provider name.
# Any other provider name in a config is an OpenAI-compatible server and needs a config base_url.
KNOWN_PROVIDERS = ("openai", "anthropic", "ollama", "lmstudio", "vllm", "openai_compatible")


def _split(value: Any) -> Any:
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return value


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MULTIMODAL_SVC_", extra="ignore")

    # Upstream providers (operator configuration). Platform keys are used in member mode only.
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_api_key: SecretStr | None = None
    ollama_base_url: str = "http://127.0.0.1:11434"  # native /api/chat (raw base64 images)
    lmstudio_base_url: str = "http://127.0.0.1:1234/v1"
    vllm_base_url: str = "http://127.0.0.1:8000/v1"
    openai_compatible_base_url: str = ""
    openai_compatible_api_key: SecretStr | None = None
    # Hosts a user's base URL may name although they resolve to non-public addresses (the same
    # list as SETTINGS_SVC_ALLOWED_BASE_URL_HOSTS), enforced again at every connection.
    allowed_base_url_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_timeout_s: float = Field(default=120.0, gt=0)  # to the first output
    upstream_idle_timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    max_retry_wait_s: float = Field(default=10.0, ge=0)
    # Output cap when a request names none; member mode always sends it (the hold's worst case).
    default_max_tokens: int = Field(default=1024, ge=1)
    max_tokens_limit: int = Field(default=32_768, ge=1)

    # The config every caller gets when settings-svc is not configured.
    default_provider: str = "openai"
    default_model: str = "gpt-4o"
    models: Annotated[list[str], NoDecode] = Field(default_factory=list)

    settings_target: str = ""
    billing_target: str = ""
    redis_url: str = ""
    usage_stream: str = STREAM
    settings_changed_channel: str = settings_changes.CHANNEL
    config_cache_ttl_s: float = Field(default=30.0, ge=0)
    internal_call_timeout_s: float = Field(default=5.0, gt=0)

    # --- image intake (multimodal_svc.intake) ---
    max_image_bytes: int = Field(default=20 * MIB, gt=0)  # one image, decoded
    max_request_image_bytes: int = Field(default=50 * MIB, gt=0)  # every image of a request
    max_images: int = Field(default=20, ge=1)
    # Pillow's decompression-bomb guard and a cap on either side.
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    max_image_side: int = Field(default=8000, gt=0)
    # https image URLs are fetched by the platform (never plain http); off: data URLs only.
    remote_images: bool = True
    image_fetch_timeout_s: float = Field(default=10.0, gt=0)
    # Hosts an image URL may name although they resolve to non-public addresses.
    allowed_image_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A PEM bundle of extra CAs trusted when fetching image URLs ("" : the system's).
    image_fetch_ca_file: str = ""
    # OpenAI may fetch https image URLs itself: sent as given, not fetched here (the hold then
    # assumes the largest image).
    openai_fetches_image_urls: bool = False
    # Animated GIFs: reduced to their first frame (as PNG), or refused.
    animated_gif: Literal["first_frame", "refuse"] = "first_frame"

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("allowed_base_url_hosts", "allowed_image_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        value = _split(value)
        return normalise_hosts(value) if isinstance(value, list) else value

    def operator_base_url(self, provider: str) -> str:
        return str(getattr(self, f"{provider}_base_url", "")) if provider in KNOWN_PROVIDERS else ""

    def platform_key(self, provider: str) -> str:
        if provider not in KNOWN_PROVIDERS:
            return ""
        secret: SecretStr | None = getattr(self, f"{provider}_api_key", None)
        return secret.get_secret_value() if secret is not None else ""
