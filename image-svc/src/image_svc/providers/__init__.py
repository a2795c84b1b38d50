"""The provider registry: api style → image client, all on one `upstream.ClientPool`."""

from __future__ import annotations

from image_svc.environment import Settings
from image_svc.providers.automatic1111 import Automatic1111Images
from image_svc.providers.base import ImageClient
from image_svc.providers.comfyui import ComfyUIImages
from image_svc.providers.openai_images import OpenAIImages
from image_svc.providers.stability import StabilityImages
from image_svc.providers.submission_line import SubmissionLines
from image_svc.providers.workflows import load_templates
from upstream import ClientPool, Connect, Endpoint, TransportOptions

API_STYLES = ("openai_images", "stability", "automatic1111", "comfyui")
# The api style of each provider name the operator can configure (a preset may name its own).
PROVIDER_STYLES = {
    "openai": "openai_images",
    "openai_compatible": "openai_images",
    "stability": "stability",
    "automatic1111": "automatic1111",
    "comfyui": "comfyui",
}


def clients(settings: Settings) -> ClientPool[ImageClient]:
    templates = load_templates(settings.comfyui_workflows_dir)
    # Shared by every A1111 client this pool builds, so a rebuilt client keeps its endpoint's line.
    lines = SubmissionLines()

    def build(endpoint: Endpoint, connect: Connect) -> ImageClient:
        style = endpoint.api_style
        if style == "stability":
            return StabilityImages(endpoint, connect)
        if style == "automatic1111":
            return Automatic1111Images(endpoint, connect, settings.automatic1111_poll_s, lines)
        if style == "comfyui":
            return ComfyUIImages(
                endpoint,
                connect,
                templates=templates,
                allowed_hosts=settings.allowed_base_url_hosts,
                connect_timeout_s=settings.upstream_connect_timeout_s,
            )
        return OpenAIImages(endpoint, connect)

    options = TransportOptions(
        connect_timeout_s=settings.upstream_connect_timeout_s,
        read_timeout_s=settings.upstream_timeout_s,
        allowed_hosts=settings.allowed_base_url_hosts,
    )
    return ClientPool(build, options)
