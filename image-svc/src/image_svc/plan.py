"""image-svc's policy: which providers and models a caller may use, what each takes (sizes,
qualities, formats, n), and the worst case a member hold covers. Every refusal says what to
change. Model ids, sizes and prices are data: the caller's config lists the models, the price
table prices them; only the shape rules of each wire protocol live here."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.image.v1 import image_pb2
from grpc_stubs.settings.v1 import settings_pb2
from image_svc.environment import Settings
from image_svc.providers import PROVIDER_STYLES
from image_svc.providers.base import Job
from image_svc.providers.openai_images import is_gpt_image
from image_svc.providers.stability import ASPECT_RATIOS
from svc_common.errors import FailedPrecondition, InvalidArgument
from svc_common.names import MODE_NAMES
from upstream import Endpoint

# Output image tokens per GPT-image image at size x quality (PROTOCOLS.md b); other sizes scale
# by area. The hold takes "auto" as the dearest quality.
GPT_IMAGE_OUTPUT_TOKENS: dict[tuple[int, int], dict[str, int]] = {
    (1024, 1024): {"low": 272, "medium": 1056, "high": 4160},
    (1024, 1536): {"low": 408, "medium": 1584, "high": 6240},
    (1536, 1024): {"low": 400, "medium": 1568, "high": 6208},
}
GPT_IMAGE_QUALITIES = ("low", "medium", "high", "auto")
GPT_IMAGE_BACKGROUNDS = ("transparent", "opaque", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
DALL_E_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
PROMPT_MAX = {"gpt-image": 32_000, "dall-e-2": 1000, "dall-e-3": 4000, "other": 10_000}
LOCAL_STYLES = ("automatic1111", "comfyui")
MAX_STEPS = 150
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The caller's image config as settings-svc resolved it."""

    provider: str
    api_style: str
    model: str
    mode: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    options: dict[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = ()


def config_from(resolved: settings_pb2.ResolvedConfig) -> ImageConfig:
    return ImageConfig(
        provider=resolved.provider,
        api_style=resolved.api_style,
        model=resolved.model,
        mode=MODE_NAMES.get(resolved.mode, "byok"),
        base_url=resolved.base_url,
        api_key=resolved.api_key if resolved.WhichOneof("credential") == "api_key" else "",
        options=dict(resolved.options),
        models=tuple(resolved.models),
    )


def default_config(settings: Settings, is_member: bool) -> ImageConfig:
    return ImageConfig(
        provider=settings.default_provider,
        api_style=PROVIDER_STYLES.get(settings.default_provider, "openai_images"),
        model=settings.default_model,
        mode="member" if is_member else "byok",
    )


@dataclass(frozen=True, slots=True)
class Plan:
    request_id: str  # minted here: hold id, usage event id, response id
    correlation_id: str
    config: ImageConfig
    endpoint: Endpoint
    job: Job
    response_format: str  # b64_json | url
    # What the usage event records and the hold prices: size and quality labels.
    usage_size: str
    usage_quality: str
    worst_case: common_pb2.Usage
    token_billed: bool  # GPT-image: priced by tokens from the provider's usage
    media_type: str
    # The size the images must have; (0, 0) when the provider picks ("auto").
    expected_size: tuple[int, int]

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def provider(self) -> str:
        return self.config.provider


def _style(config: ImageConfig) -> str:
    style = config.api_style or PROVIDER_STYLES.get(config.provider, "")
    if style == "dalle":  # the seed's name for the OpenAI images preset
        style = "openai_images"
    if style not in ("openai_images", "stability", *LOCAL_STYLES):
        raise FailedPrecondition(
            f"image generation does not support provider {config.provider!r}"
            f" (api style {style!r}): choose another provider in your image settings"
        )
    return style


def endpoint_for(config: ImageConfig, settings: Settings, style: str) -> Endpoint:
    user_base_url = bool(config.base_url)
    base_url = config.base_url or settings.operator_base_url(config.provider)
    if not base_url:
        raise FailedPrecondition(
            f"no base URL for {config.provider}: set one in your image settings",
            param="base_url",
        )
    if style == "openai_images" and user_base_url and not base_url.rstrip("/").endswith("/v1"):
        base_url = base_url.rstrip("/") + "/v1"
    key = config.api_key if config.mode == "byok" else settings.platform_key(config.provider)
    return Endpoint(config.provider, style, base_url, key, user_base_url=user_base_url)


def _bad(message: str, param: str) -> InvalidArgument:
    return InvalidArgument(message, param=param)


def _wxh(size: str) -> tuple[int, int] | None:
    match = _SIZE.match(size)
    return (int(match[1]), int(match[2])) if match else None


def _choice(value: str, allowed: tuple[str, ...], param: str, who: str) -> str:
    if value and value not in allowed:
        raise _bad(
            f"{param} {value!r} is not offered by {who}: use one of {', '.join(allowed)}", param
        )
    return value


def gpt_image_output_tokens(width: int, height: int, quality: str) -> int:
    quality = "high" if quality in ("", "auto") else quality
    exact = GPT_IMAGE_OUTPUT_TOKENS.get((width, height))
    if exact is not None:
        return exact[quality]
    # Elsewhere by area, rounded up: a hold must not fall short.
    return math.ceil(
        GPT_IMAGE_OUTPUT_TOKENS[(1024, 1024)][quality] * width * height / (1024 * 1024)
    )


def plan_generation(
    request: image_pb2.GenerateRequest, config: ImageConfig, settings: Settings, stream: bool
) -> Plan:
    style = _style(config)
    model = request.model or config.model
    if not model:
        raise _bad("no model: name one, or set one in your image settings", "model")
    if config.models and model not in config.models:
        raise _bad(
            f"model {model!r} is not offered by {config.provider}: use one of"
            f" {', '.join(config.models)}",
            "model",
        )
    prompt = request.prompt
    if not prompt.strip():
        raise _bad("prompt is empty: describe the image to generate", "prompt")
    n = request.n or 1
    output_format = request.output_format or "png"
    _choice(output_format, OUTPUT_FORMATS, "output_format", config.provider)
    response_format = request.response_format or "b64_json"
    _choice(response_format, ("b64_json", "url"), "response_format", "image generation")
    if request.partial_images and not (style == "openai_images" and is_gpt_image(model)):
        raise _bad(
            f"partial_images is offered only by GPT-image models, not {model!r}", "partial_images"
        )
    steps = request.steps if request.HasField("steps") else 20
    cfg = request.cfg_scale if request.HasField("cfg_scale") else 7.0
    seed = request.seed if request.HasField("seed") else None
    quality, background, size, style_param = (
        request.quality,
        request.background,
        request.size,
        request.style,
    )
    token_billed = False
    usage_quality = ""

    if style == "openai_images" and is_gpt_image(model):
        _prompt_max(prompt, PROMPT_MAX["gpt-image"])
        _n_range(n, 1, 10, model)
        _choice(quality, GPT_IMAGE_QUALITIES, "quality", model)
        _choice(background, GPT_IMAGE_BACKGROUNDS, "background", model)
        if background == "transparent" and output_format == "jpeg":
            raise _bad("a transparent background needs output_format png or webp", "background")
        if not 0 <= request.partial_images <= 3:
            raise _bad("partial_images must be between 0 and 3", "partial_images")
        width, height = _gpt_image_size(size or "auto", model)
        size = size or "auto"
        quality = quality or "auto"
        usage_quality = quality
        token_billed = True
    elif style == "openai_images":
        sizes = DALL_E_SIZES.get(model, DALL_E_SIZES["dall-e-2"])
        _prompt_max(prompt, PROMPT_MAX.get(model, PROMPT_MAX["dall-e-2"]))
        _n_range(n, 1, 1 if model == "dall-e-3" else 10, model)
        size = size or "1024x1024"
        _choice(size, sizes, "size", model)
        qualities = ("standard", "hd") if model == "dall-e-3" else ("standard",)
        _choice(quality, qualities, "quality", model)
        if background:
            raise _bad(f"background is not offered by {model}: leave it out", "background")
        if output_format != "png":
            raise _bad(
                f"{model} returns png only: leave output_format out or use png", "output_format"
            )
        if style_param:
            _choice(
                style_param, ("vivid", "natural") if model == "dall-e-3" else (), "style", model
            )
        width, height = _wxh(size) or (0, 0)
        quality = quality or "standard"
        usage_quality = quality
    elif style == "stability":
        _prompt_max(prompt, PROMPT_MAX["other"])
        _n_range(n, 1, 4, config.provider)
        _no(quality, "quality", config.provider)
        _no(background, "background", config.provider)
        offered = tuple(f"{w}x{h}" for (w, h) in ASPECT_RATIOS)
        size = size or "1024x1024"
        _choice(size, offered, "size", f"{config.provider} {model}")
        width, height = _wxh(size) or (1024, 1024)
        _steps_not_offered(request, config.provider)
    else:  # automatic1111, comfyui
        _prompt_max(prompt, PROMPT_MAX["other"])
        _n_range(n, 1, 8, config.provider)
        _no(quality, "quality", config.provider)
        _no(background, "background", config.provider)
        if output_format != "png":
            raise _bad(
                f"{config.provider} returns png only: use output_format png", "output_format"
            )
        size = size or "512x512"
        parsed = _wxh(size)
        if parsed is None or not all(64 <= side <= 2048 and side % 8 == 0 for side in parsed):
            raise _bad(
                f"size {size!r} is not taken by {config.provider}: use WIDTHxHEIGHT with each"
                " side a multiple of 8 between 64 and 2048",
                "size",
            )
        width, height = parsed
        if not 1 <= steps <= MAX_STEPS:
            raise _bad(f"steps must be between 1 and {MAX_STEPS}", "steps")
        usage_quality = f"{steps} steps"

    usage_size = f"{width}x{height}" if width else size
    worst = common_pb2.Usage(images=n, image_size=usage_size, image_quality=usage_quality)
    if token_billed:
        # Prompt tokens are at most its UTF-8 bytes; output tokens from the table, per image.
        worst.input_tokens = len(prompt.encode())
        w, h = (width, height) if width else (1024, 1536)  # the dearest table size
        worst.output_tokens = n * gpt_image_output_tokens(w, h, quality)
    job = Job(
        model=model,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        size=size,
        quality=request.quality,
        background=background,
        output_format=output_format,
        negative_prompt=request.negative_prompt,
        partial_images=request.partial_images,
        stream=stream,
        seed=seed,
        steps=steps,
        cfg_scale=cfg,
        sampler=request.sampler,
        style=style_param,
        workflow=config.options.get("workflow") or settings.comfyui_workflow,
    )
    return Plan(
        request_id=mint_request_id(),
        correlation_id=request.request_id,
        config=config,
        endpoint=endpoint_for(config, settings, style),
        job=job,
        response_format=response_format,
        usage_size=usage_size,
        usage_quality=usage_quality,
        worst_case=worst,
        token_billed=token_billed,
        media_type=MEDIA_TYPES[output_format],
        expected_size=(width, height),
    )


def mint_request_id() -> str:
    return "img-" + uuid.uuid4().hex


def _gpt_image_size(size: str, model: str) -> tuple[int, int]:
    if size == "auto":
        return 0, 0
    parsed = _wxh(size)
    rule = (
        "use auto or WIDTHxHEIGHT with both sides multiples of 16, an aspect ratio between 1:3"
        " and 3:1, at most 3840x2160"
    )
    if parsed is None:
        raise _bad(f"size {size!r} is not a size: {rule}", "size")
    w, h = parsed
    if (
        w < 16
        or h < 16
        or w % 16
        or h % 16
        or max(w, h) > 3 * min(w, h)
        or max(w, h) > 3840
        or w * h > 3840 * 2160
    ):
        raise _bad(f"size {size!r} is not taken by {model}: {rule}", "size")
    return w, h


def _prompt_max(prompt: str, limit: int) -> None:
    if len(prompt) > limit:
        raise _bad(
            f"prompt is {len(prompt)} characters; this model takes at most {limit}", "prompt"
        )


def _n_range(n: int, low: int, high: int, who: str) -> None:
    if not low <= n <= high:
        raise _bad(f"n must be between {low} and {high} for {who}", "n")


def _no(value: str, param: str, who: str) -> None:
    if value and value != "auto":
        raise _bad(f"{param} is not offered by {who}: leave it out", param)


def _steps_not_offered(request: image_pb2.GenerateRequest, who: str) -> None:
    if request.HasField("steps"):
        raise _bad(f"steps are not offered by {who}: leave them out", "steps")
