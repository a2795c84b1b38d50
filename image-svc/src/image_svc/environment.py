"""image-svc configuration, read from IMAGE_SVC_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from svc_common.environment import ModelServiceSettings

# Providers whose base URL and platform key (or Basic credentials) the operator configures here.
KNOWN_PROVIDERS = ("openai", "openai_compatible", "stability", "automatic1111", "comfyui")


class Settings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGE_SVC_", extra="ignore")
    KNOWN_PROVIDERS: ClassVar[tuple[str, ...]] = KNOWN_PROVIDERS

    # Upstream providers (operator configuration). Platform keys are used in member mode only.
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    # An OpenAI-compatible image server that still speaks the DALL-E shapes.
    openai_compatible_base_url: str = ""
    openai_compatible_api_key: SecretStr | None = None
    stability_base_url: str = "https://api.stability.ai"
    stability_api_key: SecretStr | None = None
    automatic1111_base_url: str = "http://127.0.0.1:7860"
    # "user:password" of A1111's --api-auth (HTTP Basic); empty: no auth.
    automatic1111_api_key: SecretStr | None = None
    comfyui_base_url: str = "http://127.0.0.1:8188"
    # A bearer key for an auth proxy in front of ComfyUI; empty: none.
    comfyui_api_key: SecretStr | None = None
    # Extra ComfyUI workflow templates (API format JSON, one per file, named by file stem); the
    # config's options.workflow picks one, else comfyui_workflow. "txt2img" ships built in.
    comfyui_workflows_dir: Path | None = None
    comfyui_workflow: str = "txt2img"
    # How often Automatic1111's /sdapi/v1/progress is polled while a job runs.
    automatic1111_poll_s: float = Field(default=0.25, gt=0)

    # Member mode for image generation (the platform's keys and credits). Off by default: a
    # member then needs their own key (403 otherwise).
    member_mode: bool = False

    # response_format "url": images are kept in Redis (with this TTL, so the store sweeps itself)
    # behind gateway URLs signed with image_url_secret, bound to the user, expiring with them.
    image_url_secret: SecretStr | None = None
    image_url_ttl_s: int = Field(default=3600, ge=1)
    image_url_path: str = "/api/image-proxy/v1/images/files"

    # A whole job (queue wait included) for a non-streamed call, or to the first event.
    upstream_timeout_s: float = Field(default=300.0, gt=0)
    # Longest silence between two events of a running job.
    upstream_idle_timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=1, ge=0)
    # The largest image accepted from a provider.
    max_image_bytes: int = Field(default=64 * 1024 * 1024, ge=1)

    # The config every caller gets when settings-svc is not configured (with default_provider).
    default_model: str = "gpt-image-2"

    # Where image-svc's keys in Redis (redis_url) begin.
    redis_prefix: str = "image-svc:"

    def named_secrets(self) -> dict[str, tuple[str, SecretStr | None]]:
        return {
            **super().named_secrets(),
            "IMAGE_SVC_IMAGE_URL_SECRET": ("secret", self.image_url_secret),
        }
