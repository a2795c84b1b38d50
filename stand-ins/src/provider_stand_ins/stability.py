"""The Stability AI v2beta stand-in: ``POST /v2beta/stable-image/generate/{ultra|core|sd3}`` with
a multipart form, answering raw image bytes with ``finish-reason`` and ``seed`` headers
(``Accept: image/*``) or ``{image, finish_reason, seed}`` (``Accept: application/json``), and
errors as ``{id, name, errors:[...]}``.
"""

from __future__ import annotations

import base64
import itertools
import os
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from provider_stand_ins.app import JSON_HEADERS, Exchange, Handler, Headers, Provider
from provider_stand_ins.images import MEDIA_TYPES, render_async, seed_for
from provider_stand_ins.state import COMPLETED, DISCONNECTED, FAILED, REJECTED, RequestRecord

GENERATE_PREFIX = "/v2beta/stable-image/generate/"
SERVICES = ("ultra", "core", "sd3")
SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")
DEFAULT_MODELS = ("ultra", "core", *SD3_MODELS)
PROMPT_MAX = 10_000
SEED_MAX = 4_294_967_294
OUTPUT_FORMATS = ("jpeg", "png", "webp")
STYLE_PRESETS = (
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
    "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk",
    "origami", "photographic", "pixel-art", "tile-texture",
)  # fmt: skip
# About one megapixel in each aspect ratio, as the hosted models return.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "21:9": (1536, 640),
    "9:21": (640, 1536),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "5:4": (1088, 896),
    "4:5": (896, 1088),
}
ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "invalid request"),
    401: ("unauthorized", "authorization: invalid or missing header value"),
    402: ("payment_required", "You lack sufficient credits to make this request."),
    403: (
        "content_moderation",
        "Your request was flagged by our content moderation system, as a result your request was"
        " denied and you were not charged.",
    ),
    404: ("not_found", "The requested resource was not found."),
    413: ("payload_too_large", "Your request was larger than 10MiB."),
    429: (
        "rate_limit_exceeded",
        "You have exceeded the rate limit of 150 requests within a 10 second period, and have"
        " been timed out for 60 seconds.",
    ),
    500: ("internal_error", "An unexpected server error has occurred, please try again later."),
}
_request_ids = itertools.count(1)
_ID_PREFIX = f"{os.getpid():08x}"


def request_id() -> str:
    """A 32-hex-digit id, as Stability's error ``id`` and ``x-request-id``."""
    return f"{_ID_PREFIX}{next(_request_ids):024x}"


def error_body(status: int, *errors: str) -> dict[str, Any]:
    name, default = ERRORS.get(status, ERRORS[500] if status >= 500 else ERRORS[400])
    return {"id": request_id(), "name": name, "errors": list(errors) or [default]}


def parse_form(content_type: str, body: bytes) -> dict[str, str | bytes]:
    """The fields of a multipart/form-data body (files as bytes); ValueError if it is not one."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError("content-type: must be multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("body: could not parse multipart/form-data")
    fields: dict[str, str | bytes] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = data if part.get_filename() else data.decode("utf-8", "replace")
    return fields


class StabilityProvider(Provider):
    """Stability AI's hosted Stable Image generate API (v2beta)."""

    name = "stability"
    default_models = DEFAULT_MODELS

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {("POST", GENERATE_PREFIX + service): self.generate for service in SERVICES}

    async def unmatched(self, ex: Exchange) -> None:
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        await ex.respond_json(404, error_body(404, f"{ex.method} {ex.path}: not found"))
        self.state.finish(record, REJECTED, 404)

    async def send_error(
        self, ex: Exchange, record: RequestRecord, status: int, outcome: str = REJECTED
    ) -> None:
        await ex.respond_json(status, error_body(status), self.retry_headers(status))
        self.state.finish(record, outcome, status)

    async def _bad_request(self, ex: Exchange, record: RequestRecord, *errors: str) -> None:
        await ex.respond_json(400, error_body(400, *errors))
        self.state.finish(record, REJECTED, 400)

    def _validate(self, service: str, form: dict[str, Any]) -> list[str]:
        errors = []
        prompt = form.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            errors.append("prompt: is required")
        elif len(prompt) > PROMPT_MAX:
            errors.append(f"prompt: must be at most {PROMPT_MAX} characters")
        negative = form.get("negative_prompt")
        if isinstance(negative, str) and len(negative) > PROMPT_MAX:
            errors.append(f"negative_prompt: must be at most {PROMPT_MAX} characters")
        ratio = form.get("aspect_ratio", "1:1")
        if ratio not in ASPECT_RATIOS:
            errors.append(f"aspect_ratio: must be one of {', '.join(ASPECT_RATIOS)}")
        seed = form.get("seed", "0")
        if not (isinstance(seed, str) and seed.isdigit() and int(seed) <= SEED_MAX):
            errors.append(f"seed: must be an integer between 0 and {SEED_MAX}")
        if form.get("output_format", "png") not in OUTPUT_FORMATS:
            errors.append(f"output_format: must be one of {', '.join(OUTPUT_FORMATS)}")
        preset = form.get("style_preset")
        if preset is not None and preset not in STYLE_PRESETS:
            errors.append(f"style_preset: must be one of {', '.join(STYLE_PRESETS)}")
        if service == "sd3":
            if form.get("model", SD3_MODELS[0]) not in SD3_MODELS:
                errors.append(f"model: must be one of {', '.join(SD3_MODELS)}")
            if form.get("mode", "text-to-image") not in ("text-to-image", "image-to-image"):
                errors.append("mode: must be one of text-to-image, image-to-image")
        return errors

    async def generate(self, ex: Exchange) -> None:
        state = self.state
        record = state.begin(ex.method, ex.path, ex.bearer_key())
        raw = await ex.read_body()
        if not state.key_accepted(record.key):
            await self.send_error(ex, record, 401)
            return
        service = ex.path[len(GENERATE_PREFIX) :]
        record.model = service
        try:
            form = parse_form(ex.header(b"content-type") or "", raw)
        except ValueError as error:
            await self._bad_request(ex, record, str(error))
            return
        errors = self._validate(service, form)
        if errors:
            await self._bad_request(ex, record, *errors)
            return
        if service == "sd3":
            record.model = str(form.get("model", SD3_MODELS[0]))
        if not state.model_known(record.model):
            await self._bad_request(ex, record, f"model: {record.model} is not available")
            return
        behaviour = state.behaviour
        if not await self.before_reply(ex, record, behaviour):
            return
        steps = behaviour.image_steps
        failing = behaviour.error_after_steps
        cut = behaviour.disconnect_after_steps
        # A job that fails or is cut short runs only the steps before that happens.
        ran = min([steps, *(n for n in (failing, cut) if n is not None)])
        if behaviour.step_delay_s and ran:
            ended = await ex.wait(behaviour.step_delay_s * ran)
            if ended is not None:
                await self._end_early(ex, record, ended, started=False)
                return
        if cut is not None and cut <= steps:
            await ex.drop_connection()
            state.finish(record, DISCONNECTED)
            return
        if failing is not None and failing <= steps:
            await ex.respond_json(500, error_body(500))
            state.finish(record, FAILED, 500)
            return
        ex.finish_waiting()

        prompt = str(form["prompt"])
        seed = int(str(form.get("seed", "0"))) or seed_for(prompt) % SEED_MAX + 1
        width, height = ASPECT_RATIOS[str(form.get("aspect_ratio", "1:1"))]
        output_format = str(form.get("output_format", "png"))
        filtered = behaviour.content_filtered
        image = await render_async(prompt, seed, width, height, output_format, filtered)
        finish_reason = "CONTENT_FILTERED" if filtered else "SUCCESS"
        record.images = 1
        record.status = 200
        if "application/json" in (ex.header(b"accept") or ""):
            payload = {
                "image": base64.b64encode(image).decode(),
                "finish_reason": finish_reason,
                "seed": seed,
            }
            await ex.respond_json(
                200, payload, [*JSON_HEADERS, *self._headers(finish_reason, seed)]
            )
        else:
            headers: Headers = [
                (b"content-type", MEDIA_TYPES[output_format].encode()),
                *self._headers(finish_reason, seed),
            ]
            await ex.respond(200, image, headers)
        state.finish(record, COMPLETED)

    @staticmethod
    def _headers(finish_reason: str, seed: int) -> Headers:
        return [
            (b"finish-reason", finish_reason.encode()),
            (b"seed", str(seed).encode()),
            (b"x-request-id", request_id().encode()),
        ]
