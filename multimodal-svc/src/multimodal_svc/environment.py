"""multimodal-svc configuration, read from MULTIMODAL_SVC_* environment variables."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from svc_common.environment import CommaList, HostList, ModelServiceSettings

MIB = 1024 * 1024

# Providers whose base URL and platform key the operator configures here, by provider name.
# Any other provider name in a config is an OpenAI-compatible server and needs a config base_url.
KNOWN_PROVIDERS = ("openai", "anthropic", "ollama", "lmstudio", "vllm", "openai_compatible")


class Settings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MULTIMODAL_SVC_", extra="ignore")
    KNOWN_PROVIDERS: ClassVar[tuple[str, ...]] = KNOWN_PROVIDERS

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

    upstream_timeout_s: float = Field(default=120.0, gt=0)  # to the first output
    upstream_idle_timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    # Output cap when a request names none; member mode always sends it (the hold's worst case).
    default_max_tokens: int = Field(default=1024, ge=1)
    max_tokens_limit: int = Field(default=32_768, ge=1)

    # The config every caller gets when settings-svc is not configured (with default_provider).
    default_model: str = "gpt-4o"
    models: CommaList = Field(default_factory=list)

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
    allowed_image_hosts: HostList = Field(default_factory=list)
    # A PEM bundle of extra CAs trusted when fetching image URLs ("" : the system's).
    image_fetch_ca_file: str = ""
    # OpenAI may fetch https image URLs itself: sent as given, not fetched here (the hold then
    # assumes the largest image).
    openai_fetches_image_urls: bool = False
    # Animated GIFs: reduced to their first frame (as PNG), or refused.
    animated_gif: Literal["first_frame", "refuse"] = "first_frame"
