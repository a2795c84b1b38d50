"""OpenAI's ``POST /v1/images/generations`` on the OpenAI stand-in: GPT-image models (any valid
``WxH``, quality, background, output_format, ``n``, token ``usage``, and the ``stream`` +
``partial_images`` SSE events) and the DALL-E shapes OpenAI-compatible image servers still speak
(``response_format`` url or b64_json; a url points at ``/v1/images/files/<name>`` here).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import math
import re
import time
from collections import OrderedDict
from typing import Any

import orjson

from provider_stand_ins.app import Exchange, Handler, Headers
from provider_stand_ins.images import MEDIA_TYPES, render_async, render_progress, seed_for
from provider_stand_ins.openai import DEFAULT_MODELS, OpenAIProvider, error_payload
from provider_stand_ins.state import (
    CANCELLED,
    COMPLETED,
    DISCONNECTED,
    REJECTED,
    STREAM_ERROR,
    RequestRecord,
)

GPT_IMAGE_MODELS = ("gpt-image-2", "gpt-image-2-2026-04-21")
DALL_E_MODELS = ("dall-e-2", "dall-e-3")
IMAGE_MODELS = GPT_IMAGE_MODELS + DALL_E_MODELS
FILES_PREFIX = "/v1/images/files/"

GPT_IMAGE_PROMPT_MAX = 32_000
MAX_LONG_SIDE = 3840
MAX_PIXELS = 3840 * 2160
QUALITIES = ("low", "medium", "high", "auto")
BACKGROUNDS = ("transparent", "opaque", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
# "auto" quality is answered as this one (the response names the quality it used).
AUTO_QUALITY = "medium"
# Output image tokens per image; the same for every GPT-image model (PROTOCOLS.md b).
OUTPUT_TOKENS: dict[tuple[int, int], dict[str, int]] = {
    (1024, 1024): {"low": 272, "medium": 1056, "high": 4160},
    (1024, 1536): {"low": 408, "medium": 1584, "high": 6240},
    (1536, 1024): {"low": 400, "medium": 1568, "high": 6208},
}
DALL_E_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
DALL_E_PROMPT_MAX = {"dall-e-2": 1000, "dall-e-3": 4000}
MODERATION_MESSAGE = (
    "Your request was rejected by the safety system. If you believe this is an error, contact us"
    " at help.openai.com and include the request ID req_standin."
)
IMAGE_ERROR_MESSAGE = "An error occurred while processing your request. Please try again."
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_file_ids = itertools.count(1)
STORED_FILES = 256  # urls of older images stop working, as OpenAI's expire


def output_tokens(width: int, height: int, quality: str) -> int:
    """Image tokens of one image: the table at its sizes, scaled by area elsewhere."""
    exact = OUTPUT_TOKENS.get((width, height))
    if exact is not None:
        return exact[quality]
    return round(OUTPUT_TOKENS[(1024, 1024)][quality] * width * height / (1024 * 1024))


def gpt_image_size(size: str) -> tuple[int, int] | None:
    """(width, height) of a size gpt-image-2 takes, or None."""
    if size == "auto":
        return 1024, 1024
    match = _SIZE.match(size)
    if match is None:
        return None
    width, height = int(match[1]), int(match[2])
    if width < 16 or height < 16 or width % 16 or height % 16:
        return None
    if max(width, height) > 3 * min(width, height):
        return None
    if max(width, height) > MAX_LONG_SIDE or width * height > MAX_PIXELS:
        return None
    return width, height


def _invalid(message: str, param: str | None, code: str | None) -> tuple[int, dict[str, Any]]:
    return 400, error_payload(message, "invalid_request_error", param, code)


def _int_param(body: dict[str, Any], name: str, low: int, high: int) -> tuple[int, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return _invalid(
            f"Invalid type for '{name}': expected an integer, but got a"
            f" {type(value).__name__} instead.",
            name,
            "invalid_type",
        )
    if value < low:
        return _invalid(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got"
            f" {value} instead.",
            name,
            "integer_below_min_value",
        )
    if value > high:
        return _invalid(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got"
            f" {value} instead.",
            name,
            "integer_above_max_value",
        )
    return None


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> tuple[int, Any] | None:
    value = body.get(name)
    if value is None or value in allowed:
        return None
    listed = ", ".join(f"'{option}'" for option in allowed[:-1]) + f", and '{allowed[-1]}'"
    return _invalid(
        f"Invalid value: '{value}'. Supported values are: {listed}.", name, "invalid_value"
    )


class ImageRequest:
    """A validated images request: what to draw and how to answer."""

    def __init__(self, body: dict[str, Any], width: int, height: int) -> None:
        self.model: str = body["model"]
        self.prompt: str = body["prompt"]
        self.n: int = body.get("n") or 1
        self.width = width
        self.height = height
        self.gpt_image = self.model not in DALL_E_MODELS
        self.stream = body.get("stream") is True
        self.partial_images: int = body.get("partial_images") or 0
        quality = body.get("quality") or "auto"
        self.quality: str = AUTO_QUALITY if quality == "auto" else quality
        background = body.get("background") or "auto"
        self.background: str = "opaque" if background == "auto" else background
        self.output_format: str = body.get("output_format") or "png"
        self.response_format: str = body.get("response_format") or "url"
        self.seed = seed_for(self.prompt)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def usage(self, images: int) -> dict[str, Any]:
        text_tokens = len(self.prompt.split())
        output = images * output_tokens(self.width, self.height, self.quality)
        return {
            "input_tokens": text_tokens,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": text_tokens},
            "output_tokens": output,
            "total_tokens": text_tokens + output,
        }

    def render(self, index: int, grain: bool = False) -> Any:
        """The coroutine drawing image ``index`` (each image of a request has its own seed)."""
        transparent = self.gpt_image and self.background == "transparent"
        fmt = self.output_format if self.gpt_image else "png"
        return render_async(
            self.prompt, self.seed + index, self.width, self.height, fmt, False, transparent, grain
        )


def _validate(body: Any) -> tuple[int, dict[str, Any]] | tuple[int, int]:
    """(400, OpenAI's error) for an invalid request, else (width, height)."""
    if not isinstance(body, dict):
        return _invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't"
            " using your HTTP library correctly. The OpenAI API expects a JSON payload, but what"
            " was sent was not valid JSON.",
            None,
            None,
        )
    prompt = body.get("prompt")
    if prompt is None:
        return _invalid(
            "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
        )
    if not isinstance(prompt, str) or not prompt:
        return _invalid(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an"
            " empty string instead.",
            "prompt",
            "empty_string",
        )
    model = body.get("model") or "dall-e-2"
    body["model"] = model
    dall_e = model in DALL_E_MODELS
    limit = DALL_E_PROMPT_MAX.get(model, GPT_IMAGE_PROMPT_MAX)
    if len(prompt) > limit:
        return _invalid(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {limit},"
            f" but got a string with length {len(prompt)} instead.",
            "prompt",
            "string_above_max_length",
        )
    n_error = _int_param(body, "n", 1, 1 if model == "dall-e-3" else 10)
    if n_error is not None:
        return n_error
    size = body.get("size") or ("auto" if not dall_e else "1024x1024")
    if not isinstance(size, str):
        return _invalid("Invalid type for 'size': expected a string.", "size", "invalid_type")
    if dall_e:
        sizes = DALL_E_SIZES[model]
        problem = _choice({"size": size}, "size", sizes)
        if problem is not None:
            return problem
        for name in ("stream", "partial_images", "background", "output_format"):
            if body.get(name) is not None:
                return _invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        problem = _choice(body, "response_format", ("url", "b64_json")) or _choice(
            body,
            "quality",
            ("standard", "hd") if model == "dall-e-3" else ("standard",),
        )
        if problem is None and model == "dall-e-3":
            problem = _choice(body, "style", ("vivid", "natural"))
        if problem is not None:
            return problem
        width, height = (int(side) for side in size.split("x"))
        return width, height
    if body.get("response_format") is not None:
        return _invalid(
            "Unknown parameter: 'response_format'.", "response_format", "unknown_parameter"
        )
    dimensions = gpt_image_size(size)
    if dimensions is None:
        return _invalid(
            f"Invalid size '{size}'. Requested resolution must have both sides divisible by 16,"
            f" an aspect ratio between 1:3 and 3:1, and at most {MAX_PIXELS} pixels"
            f" ({MAX_LONG_SIDE}x2160).",
            "size",
            "invalid_value",
        )
    choices: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("quality", QUALITIES),
        ("background", BACKGROUNDS),
        ("output_format", OUTPUT_FORMATS),
        ("moderation", ("low", "auto")),
    )
    for name, allowed in choices:
        problem = _choice(body, name, allowed)
        if problem is not None:
            return problem
    problem = _int_param(body, "partial_images", 0, 3) or _int_param(
        body, "output_compression", 0, 100
    )
    if problem is not None:
        return problem
    if body.get("background") == "transparent" and body.get("output_format") == "jpeg":
        return _invalid(
            "Transparent background is not supported for the jpeg output format; use png or webp.",
            "background",
            "invalid_value",
        )
    return dimensions


def _sse(payload: dict[str, Any]) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class OpenAIImagesProvider(OpenAIProvider):
    """The OpenAI stand-in with the images API added to its chat and models routes."""

    default_models: tuple[str, ...] = DEFAULT_MODELS + IMAGE_MODELS  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            **super().routes(),
            ("POST", "/v1/images/generations"): self.images_generations,
        }

    async def unmatched(self, ex: Exchange) -> None:
        if ex.method == "GET" and ex.path.startswith(FILES_PREFIX):
            await self.image_file(ex)
            return
        await super().unmatched(ex)

    # --- POST /v1/images/generations -------------------------------------------------------

    async def images_generations(self, ex: Exchange) -> None:
        state = self.state
        record = state.begin(ex.method, ex.path, ex.bearer_key())
        raw = await ex.read_body()
        if not state.key_accepted(record.key):
            await self.send_error(ex, record, 401)
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        checked = _validate(body)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            record.model = body["model"]
        if isinstance(checked[1], dict):
            await ex.respond_json(checked[0], checked[1])
            state.finish(record, REJECTED, checked[0])
            return
        assert isinstance(body, dict)
        if not self.model_known(body["model"]):
            await self.send_error(ex, record, 404)
            return
        request = ImageRequest(body, checked[0], checked[1])  # type: ignore[arg-type]
        behaviour = state.behaviour
        if behaviour.content_filtered:
            payload = error_payload(
                MODERATION_MESSAGE, "image_generation_user_error", None, "moderation_blocked"
            )
            await ex.respond_json(400, payload)
            state.finish(record, REJECTED, 400)
            return
        if not await self.before_reply(ex, record, behaviour):
            return
        if request.stream:
            await self._stream(ex, record, request)
        else:
            await self._whole(ex, record, request)

    async def _whole(self, ex: Exchange, record: RequestRecord, request: ImageRequest) -> None:
        behaviour = self.state.behaviour
        # The n images are drawn side by side, as the provider does: one job's worth of steps.
        delay = behaviour.step_delay_s * behaviour.image_steps
        if delay:
            ended = await ex.wait(delay)
            if ended is not None:
                await self._end_early(ex, record, ended, started=False)
                return
        ex.finish_waiting()
        images = await asyncio.gather(
            *(request.render(index, behaviour.grain) for index in range(request.n))
        )
        payload: dict[str, Any] = {"created": int(time.time())}
        if request.gpt_image:
            payload["background"] = request.background
            payload["data"] = [{"b64_json": base64.b64encode(image).decode()} for image in images]
            payload["output_format"] = request.output_format
            payload["quality"] = request.quality
            payload["size"] = request.size
            payload["usage"] = request.usage(len(images))
        else:
            payload["data"] = [self._dall_e_item(ex, request, image) for image in images]
        record.images = len(images)
        record.status = 200
        await ex.respond_json(200, payload)
        self.state.finish(record, COMPLETED)

    def _dall_e_item(self, ex: Exchange, request: ImageRequest, image: bytes) -> dict[str, Any]:
        item: dict[str, Any] = {}
        if request.response_format == "b64_json":
            item["b64_json"] = base64.b64encode(image).decode()
        else:
            name = f"img-{next(_file_ids):08d}.png"
            self._files[name] = (image, MEDIA_TYPES["png"])
            while len(self._files) > STORED_FILES:
                self._files.popitem(last=False)
            host = ex.header(b"host") or "127.0.0.1"
            item["url"] = f"http://{host}{FILES_PREFIX}{name}"
        if request.model == "dall-e-3":
            item["revised_prompt"] = request.prompt
        return item

    async def _stream(self, ex: Exchange, record: RequestRecord, request: ImageRequest) -> None:
        state = self.state
        state.start_stream(record)
        record.status = 200
        await ex.start(200, self.stream_headers)
        steps = max(1, state.behaviour.image_steps)
        partial_at = {
            math.ceil((index + 1) * steps / (request.partial_images + 1)): index
            for index in range(request.partial_images)
        }
        fields = {
            "size": request.size,
            "quality": request.quality,
            "background": request.background,
            "output_format": request.output_format,
        }
        sent = 0
        done_steps = 0
        for image_index in range(request.n):
            for step in range(1, steps + 1):
                behaviour = state.behaviour
                if behaviour.step_delay_s:
                    ended = await ex.wait(behaviour.step_delay_s)
                    if ended is not None:
                        record.chunks_sent = sent
                        await self._end_early(ex, record, ended, started=True)
                        return
                done_steps += 1
                cut = behaviour.disconnect_after_steps
                if cut is not None and done_steps >= cut:
                    record.chunks_sent = sent
                    await ex.drop_connection()
                    state.finish(record, DISCONNECTED)
                    return
                failing = behaviour.error_after_steps
                if failing is not None and done_steps >= failing:
                    record.chunks_sent = sent
                    ex.finish_waiting()
                    error = error_payload(IMAGE_ERROR_MESSAGE, "server_error")
                    await ex.end(
                        b"event: error\ndata: " + orjson.dumps({"type": "error", **error}) + b"\n\n"
                    )
                    state.finish(record, STREAM_ERROR)
                    return
                if step in partial_at and step < steps:
                    partial = await asyncio.to_thread(
                        render_progress,
                        request.prompt,
                        request.seed + image_index,
                        request.width,
                        request.height,
                        step / steps,
                        request.output_format,
                        None,
                    )
                    await ex.chunk(
                        _sse(
                            {
                                "type": "image_generation.partial_image",
                                "b64_json": base64.b64encode(partial).decode(),
                                "partial_image_index": partial_at[step],
                                "created_at": int(time.time()),
                                **fields,
                            }
                        )
                    )
                    sent += 1
            image = await request.render(image_index)
            completed = {
                "type": "image_generation.completed",
                "b64_json": base64.b64encode(image).decode(),
                "created_at": int(time.time()),
                **fields,
                "usage": request.usage(1),
            }
            sent += 1
            record.images = image_index + 1
            if image_index + 1 < request.n:
                await ex.chunk(_sse(completed))
                continue
            record.chunks_sent = sent
            if ex.client_gone():
                state.finish(record, CANCELLED)
                return
            ex.finish_waiting()
            await ex.end(_sse(completed))
        state.finish(record, COMPLETED)

    # --- GET /v1/images/files/<name> --------------------------------------------------------

    async def image_file(self, ex: Exchange) -> None:
        """A url answer's image; no key needed, as OpenAI's signed blob URLs need none."""
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        stored = self._files.get(ex.path[len(FILES_PREFIX) :])
        if stored is None:
            await ex.respond(404, b"BlobNotFound", [(b"content-type", b"text/plain")])
            self.state.finish(record, REJECTED, 404)
            return
        image, media_type = stored
        headers: Headers = [(b"content-type", media_type.encode())]
        await ex.respond(200, image, headers)
        self.state.finish(record, COMPLETED, 200)
