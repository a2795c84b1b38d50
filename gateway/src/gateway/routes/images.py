"""The image proxy: OpenAI-compatible image generation over image-svc (every provider, not only
OpenAI), its models and status, the stored images behind signed URLs, under /api/image-proxy and
the seed's alias /api/proxy/image.

With `stream: true` the answer is server-sent events: OpenAI's own `image_generation.partial_image`
and `image_generation.completed` (an `event:` line, data whose `type` repeats it), interleaved
with the platform's progress events `image_generation.queued` (queue position),
`image_generation.progress` (step / total, ETA) and `image_generation.preview` (a small image).
The openai SDK (3.x) builds every event of an image stream into its event union without
validating: an unknown `type` arrives as an event object that keeps its `type` and fields, so
`client.images.generate(stream=True)` iterates over them and a client routes on `event.type`.
An error after the status line is one `error` event whose data carries `error`, which the SDK
raises as APIError. The stream ends with `data: [DONE]`, which the SDK stops on.

The gateway checks only the JSON shape; what a model takes (sizes, n, quality, formats, prompt
length) is data that image-svc checks against the caller's provider, answered as 400s here.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway import clients, schemas
from gateway.deps import CurrentUser, RequestId
from gateway.errors import ApiError, invalid
from gateway.metrics import Metrics
from gateway.routes._common import (
    check_json_content_type,
    error_responses,
    model_card,
    model_list_response,
    status_response,
    unary_response,
)
from gateway.streaming import (
    CREDITS_HEADER,
    STREAM_HEADERS,
    CallCancelled,
    DisconnectWatcher,
    EventStreamResponse,
    ModelStream,
)
from grpc_stubs.image.v1 import image_pb2

log = logging.getLogger("gateway.images")
PREFIX = "/api/image-proxy"
ALIAS_PREFIX = "/api/proxy/image"  # the seed's name for the same route
FILES_PATH = "/v1/images/files"  # image-svc's IMAGE_SVC_IMAGE_URL_PATH ends with this
_STRINGS = (
    "model",
    "size",
    "quality",
    "background",
    "output_format",
    "response_format",
    "negative_prompt",
    "sampler",
    "style",
)
_INTS = ("n", "partial_images", "seed", "steps")
# OpenAI parameters the platform cannot honour: a 400 names them rather than dropping them.
_NOT_HONOURED = {
    "output_compression": "images are returned as the provider made them",
}
# Accepted and dropped, as on the text route: they change nothing a user can see.
_DROPPED = ("user", "moderation")
_ERRORS = error_responses(400, 401, 402, 403, 404, 413, 415, 429, 503, 504)


class ImageGenerationRequest(BaseModel):
    """OpenAI's image generation body, plus the knobs of local Stable Diffusion servers."""

    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    style: str | None = None
    stream: bool | None = None
    partial_images: int | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None


class ImageTokenDetails(BaseModel):
    image_tokens: int
    text_tokens: int


class ImageUsage(BaseModel):
    input_tokens: int
    input_tokens_details: ImageTokenDetails
    output_tokens: int
    total_tokens: int


class GeneratedImage(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[GeneratedImage]
    size: str | None = None
    quality: str | None = None
    output_format: str | None = None
    background: str | None = None
    usage: ImageUsage | None = None


async def image_client(request: Request) -> clients.ImageClient:
    client = request.app.state.backends.image
    if client is None:
        raise ApiError(
            503, "image-svc is not configured on this gateway", code="service_unavailable"
        )
    return client


ImageClient = Annotated[clients.ImageClient, Depends(image_client)]


def _type_error(param: str, expected: str) -> ApiError:
    return invalid(
        f"invalid type for '{param}': expected {expected}", param=param, code="invalid_type"
    )


def parse_image_request(raw: bytes, request_id: str) -> tuple[image_pb2.GenerateRequest, bool]:
    """(request, stream) for an OpenAI image generation body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    for name, why in _NOT_HONOURED.items():
        if body.get(name) is not None:
            raise invalid(f"'{name}' is not supported: {why}", param=name, code="invalid_value")
    prompt = body.get("prompt")
    if prompt is None:
        raise invalid(
            "missing required parameter 'prompt'",
            param="prompt",
            code="missing_required_parameter",
        )
    if not isinstance(prompt, str):
        raise _type_error("prompt", "a string")
    request = image_pb2.GenerateRequest(prompt=prompt, request_id=request_id)
    for name in _STRINGS:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _type_error(name, "a string")
        setattr(request, name, value)
    for name in _INTS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, "an integer")
        if name in ("n", "partial_images", "steps") and not -(2**31) <= value < 2**31:
            raise invalid(f"'{name}' is out of range", param=name, code="invalid_value")
        if name == "seed" and not -(2**63) <= value < 2**63:
            raise invalid("'seed' is out of range", param="seed", code="invalid_value")
        if name == "n" and value < 1:
            raise invalid("'n' must be at least 1", param="n", code="invalid_value")
        if name == "partial_images" and value < 0:
            raise invalid(
                "'partial_images' must be between 0 and 3", param=name, code="invalid_value"
            )
        setattr(request, name, value)
    cfg_scale = body.get("cfg_scale")
    if cfg_scale is not None:
        if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, int | float):
            raise _type_error("cfg_scale", "a number")
        request.cfg_scale = float(cfg_scale)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _type_error("stream", "a boolean")
    if request.partial_images and not stream:
        raise invalid(
            "'partial_images' needs stream: true", param="partial_images", code="invalid_value"
        )
    return request, stream


def _absolute(request: Request, url: str) -> str:
    # image-svc signs a gateway path; the client gets it on this gateway's own address.
    return str(request.base_url).rstrip("/") + url if url.startswith("/") else url


def _image_json(request: Request, image: image_pb2.Image) -> dict[str, Any]:
    if image.url:
        item: dict[str, Any] = {"url": _absolute(request, image.url)}
    else:
        item = {"b64_json": base64.b64encode(image.data).decode()}
    if image.revised_prompt:
        item["revised_prompt"] = image.revised_prompt
    return item


def _usage_json(usage: image_pb2.ImageUsage) -> dict[str, Any]:
    units = usage.units
    return {
        "input_tokens": units.input_tokens,
        "input_tokens_details": {
            "image_tokens": usage.image_input_tokens,
            "text_tokens": usage.text_input_tokens,
        },
        "output_tokens": units.output_tokens,
        "total_tokens": units.input_tokens + units.output_tokens,
    }


def images_json(request: Request, response: image_pb2.GenerateResponse) -> dict[str, Any]:
    body: dict[str, Any] = {
        "created": response.created or int(time.time()),
        "data": [_image_json(request, image) for image in response.images],
        "size": response.size or None,
        "quality": response.quality or None,
        "output_format": response.output_format or None,
        "background": response.background or None,
    }
    if response.has_token_usage:
        body["usage"] = _usage_json(response.usage)
    return body


class ImageEventWriter:
    """The bytes of one image stream's events: OpenAI's, and the platform's progress events."""

    DONE = b"data: [DONE]\n\n"

    def __init__(self, request: Request) -> None:
        self._request = request
        self.created = int(time.time())

    @staticmethod
    def event(kind: str, fields: dict[str, Any]) -> bytes:
        data = orjson.dumps({"type": kind, **fields})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def write(self, message: image_pb2.GenerateStreamResponse) -> bytes | None:
        kind = message.WhichOneof("event")
        if kind == "queued":
            return self.event("image_generation.queued", {"position": message.queued.position})
        if kind == "progress":
            p = message.progress
            return self.event(
                "image_generation.progress",
                {
                    "step": p.step,
                    "total": p.total,
                    "eta_seconds": round(p.eta_s, 3) if p.eta_s >= 0 else None,
                    "image_index": p.image_index,
                },
            )
        if kind == "preview":
            preview = message.preview
            return self.event(
                "image_generation.preview",
                {
                    "b64_json": base64.b64encode(preview.data).decode(),
                    "media_type": preview.media_type,
                    "image_index": preview.image_index,
                },
            )
        if kind == "partial_image":
            part = message.partial_image
            return self.event(
                "image_generation.partial_image",
                {
                    "b64_json": base64.b64encode(part.data).decode(),
                    "partial_image_index": part.partial_image_index,
                    "created_at": self.created,
                    "size": part.size,
                    "quality": part.quality,
                    "background": part.background or None,
                    "output_format": part.output_format,
                },
            )
        if kind == "completed":
            done = message.completed
            fields = _image_json(self._request, done.image)
            fields.update(
                created_at=self.created,
                size=done.size,
                quality=done.quality,
                background=done.background or None,
                output_format=done.output_format,
                image_index=done.image_index,
                # Providers that do not bill by tokens report none: zeros, never a guess.
                usage=_usage_json(done.usage),
            )
            return self.event("image_generation.completed", fields)
        return None

    @staticmethod
    def error(err: ApiError) -> bytes:
        return b"event: error\ndata: " + orjson.dumps(err.body()) + b"\n\n"


async def start_image_stream(request: Request, stream: ModelStream) -> Response:
    """The SSE answer to an image generation with stream: true, from a running image stream."""
    metrics: Metrics = request.app.state.metrics
    watcher = DisconnectWatcher(request.receive, stream.cancel)
    # Wait for the first event: an error before it (no credits, member mode off, a bad size)
    # is still a plain HTTP error that the SDK raises as the right exception.
    try:
        first: Any = await stream.read()
    except BaseException as err:
        watcher.stop()
        stream.cancel()
        if isinstance(err, CallCancelled):
            return Response(status_code=499)
        raise
    headers = dict(STREAM_HEADERS)
    pending = first
    if first is not None and first.WhichOneof("event") == "start":
        if first.start.balance_micros >= 0:
            headers[CREDITS_HEADER] = str(first.start.balance_micros)
        pending = None
    writer = ImageEventWriter(request)
    return EventStreamResponse(_events(stream, writer, pending, metrics), watcher, headers)


async def _events(
    stream: ModelStream, writer: ImageEventWriter, pending: Any, metrics: Metrics
) -> AsyncIterator[bytes]:
    metrics.streams.inc()
    try:
        message: Any = pending or await stream.read()
        while message is not None:
            if message.WhichOneof("event") == "finish":
                yield ImageEventWriter.DONE
                # Read to the end rather than cancel: image-svc publishes the usage event after
                # its last message.
                try:
                    while await stream.read() is not None:
                        pass
                except ApiError:
                    pass
                return
            chunk = writer.write(message)
            if chunk is not None:
                yield chunk
            message = await stream.read()
        yield ImageEventWriter.error(
            ApiError(502, "the image stream ended before it finished", code="upstream_error")
        )
    except ApiError as err:
        yield ImageEventWriter.error(err)
    except CallCancelled:
        return  # the client went away: nobody to tell
    except Exception:
        log.exception("the image stream failed after its first event")
        yield ImageEventWriter.error(
            ApiError(500, "the gateway failed while streaming the images", code="server_error")
        )
    finally:
        stream.cancel()
        metrics.streams.dec()


async def create_image(
    request: Request, user: CurrentUser, request_id: RequestId, images: ImageClient
) -> Response:
    check_json_content_type(request)
    generate, stream = parse_image_request(await request.body(), request_id)
    if stream:
        return await start_image_stream(request, images.generate_stream(generate, user, request_id))
    return await unary_response(
        request,
        images.generate(generate, user, request_id),
        lambda response: orjson.dumps(images_json(request, response)),
    )


async def list_image_models(
    user: CurrentUser, request_id: RequestId, images: ImageClient
) -> Response:
    response = await images.list_models(user, request_id)
    return model_list_response(model_card(m) for m in response.models)


async def get_image_status(
    user: CurrentUser, request_id: RequestId, images: ImageClient
) -> Response:
    status = await images.check_status(user, request_id)
    return status_response(status)


async def get_image_file(
    image_id: str,
    user: CurrentUser,
    request_id: RequestId,
    images: ImageClient,
    # Unix seconds, an int64 in the image-svc request: anything else is a 422, not a failure.
    expires: Annotated[int, Query(ge=0, le=2**63 - 1)],
    signature: Annotated[str, Query(max_length=256)],
) -> Response:
    """A stored image: image-svc checks the signature, the user it was made for and the expiry."""
    found = await images.get_image(
        image_pb2.GetImageRequest(image_id=image_id, expires=expires, signature=signature),
        user,
        request_id,
    )
    max_age = max(0, expires - int(time.time()))
    return Response(
        found.data,
        media_type=found.media_type,
        headers={"cache-control": f"private, max-age={max_age}"},
    )


def build_router(prefix: str, *, alias: bool = False) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["images"])
    router.add_api_route(
        "/v1/images/generations",
        create_image,
        methods=["POST"],
        summary="Generate images with your image provider (OpenAI-compatible)",
        response_model=None,
        include_in_schema=not alias,
        responses={
            200: {
                "model": ImagesResponse,
                "description": "The images, or with stream: true server-sent events: "
                "image_generation.queued / .progress / .preview (the platform's), "
                "image_generation.partial_image and image_generation.completed (OpenAI's), "
                "then data: [DONE]",
                "content": {"text/event-stream": {}},
            },
            **_ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": ImageGenerationRequest.model_json_schema()}
                },
            }
        },
    )
    router.add_api_route(
        "/v1/models",
        list_image_models,
        methods=["GET"],
        summary="The image models of your image provider (OpenAI list shape)",
        response_model=None,
        include_in_schema=not alias,
        responses={200: {"model": schemas.ModelList}, **_ERRORS},
    )
    for path in ("/status", "/v1/status"):
        router.add_api_route(
            path,
            get_image_status,
            methods=["GET"],
            summary="Check the connection to your image provider",
            response_model=None,
            responses={200: {"model": schemas.ProviderStatus}, **_ERRORS},
            include_in_schema=path == "/status" and not alias,
        )
    router.add_api_route(
        FILES_PATH + "/{image_id}",
        get_image_file,
        methods=["GET"],
        summary="A generated image behind its signed URL (yours only, until it expires)",
        response_model=None,
        # Image bytes, never JSON: only the image media types below are documented for a 200.
        response_class=Response,
        include_in_schema=not alias,
        responses={
            200: {
                "description": "The image bytes",
                "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
            },
            **_ERRORS,
        },
    )
    return router


def include_routers(app: FastAPI) -> None:
    app.include_router(build_router(PREFIX))
    app.include_router(build_router(ALIAS_PREFIX, alias=True))
