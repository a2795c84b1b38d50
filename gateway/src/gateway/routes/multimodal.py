"""The multimodal proxy: OpenAI-compatible chat completions whose messages carry images
(`image_url` parts: data: URLs, and https URLs where the operator allows them), the model list
and status, over multimodal-svc. Served under /api/multimodal-proxy and the seed's alias
/api/proxy/multimodal; the same SSE and error shapes as the text route (gateway.streaming).

The gateway checks only the JSON shape: multimodal-svc reads, checks and normalises the images
themselves (one place for every caller, internal services included).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from gateway import schemas
from gateway.chat import completion_json, message_fields, parse_chat_request
from gateway.deps import CurrentUser, MultimodalClient, RequestId
from gateway.errors import ApiError, invalid
from gateway.routes._common import (
    check_json_content_type,
    error_responses,
    model_card,
    model_list_response,
    status_response,
    unary_response,
)
from gateway.streaming import start_chat_stream
from grpc_stubs.multimodal.v1 import multimodal_pb2

PREFIX = "/api/multimodal-proxy"
ALIAS_PREFIX = "/api/proxy/multimodal"  # the seed's name for the same route
MULTIMODAL_PREFIXES = (PREFIX + "/", ALIAS_PREFIX + "/")  # their larger body limit
_DETAILS = ("auto", "low", "high")
# What the text route's parser checked and multimodal.v1 takes as it is (the same fields).
_OPTIONAL = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "parallel_tool_calls",
    "top_logprobs",
)
_ERRORS = error_responses(400, 401, 402, 404, 413, 415, 429, 503, 504)


def _type_error(param: str, expected: str) -> ApiError:
    return invalid(
        f"invalid type for '{param}': expected {expected}", param=param, code="invalid_type"
    )


def _image(part: dict[str, Any], where: str) -> multimodal_pb2.ImageInput:
    image = part.get("image_url")
    if isinstance(image, str):  # the plain-string form some clients send
        image = {"url": image}
    if not isinstance(image, dict):
        raise _type_error(f"{where}.image_url", "an object with a 'url'")
    url = image.get("url")
    if not isinstance(url, str) or not url:
        raise _type_error(f"{where}.image_url.url", "a data: or https URL")
    detail = image.get("detail") or ""
    if detail and detail not in _DETAILS:
        raise invalid(
            f"invalid value for '{where}.image_url.detail': use 'low', 'high' or 'auto'",
            param=f"{where}.image_url.detail",
            code="invalid_value",
        )
    return multimodal_pb2.ImageInput(url=url, detail=detail)


def _content(content: Any, where: str) -> list[multimodal_pb2.ContentPart]:
    if isinstance(content, str):
        return [multimodal_pb2.ContentPart(text=content)]
    if not isinstance(content, list):
        raise _type_error(where, "a string or an array of content parts")
    parts = []
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        if not isinstance(part, dict):
            raise _type_error(at, "an object")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _type_error(f"{at}.text", "a string")
            parts.append(multimodal_pb2.ContentPart(text=text))
        elif kind == "image_url":
            parts.append(multimodal_pb2.ContentPart(image=_image(part, at)))
        else:
            raise invalid(
                f"invalid value for '{at}.type': use 'text' or 'image_url'",
                param=f"{at}.type",
                code="invalid_value",
            )
    return parts


def _messages(raw: Any) -> list[multimodal_pb2.ChatMessage]:
    return [
        multimodal_pb2.ChatMessage(
            role=m.role,
            content=[] if m.content is None else _content(m.content, f"messages[{i}].content"),
            name=m.name,
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
        )
        for i, m in enumerate(message_fields(raw))
    ]


def parse_multimodal_request(
    raw: bytes, request_id: str
) -> tuple[multimodal_pb2.GenerateRequest, bool, bool]:
    """(request, stream, include_usage) for an OpenAI chat completions body with images."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    parsed = _messages(body.get("messages"))
    # Every other parameter is validated exactly as on the text route, by the text route's parser
    # on the body without its (image-carrying) messages.
    rest = {k: v for k, v in body.items() if k != "messages"}
    rest["messages"] = [{"role": "user", "content": ""}]
    chat = parse_chat_request(orjson.dumps(rest), request_id)
    text = chat.generate
    request = multimodal_pb2.GenerateRequest(
        model=text.model,
        messages=parsed,
        stop=list(text.stop),
        request_id=request_id,
        tools=text.tools,
        tool_choice=text.tool_choice,
        tool_choice_function=text.tool_choice_function,
        response_format_json=text.response_format_json,
        logprobs=text.logprobs,
    )
    for name in _OPTIONAL:
        if text.HasField(name):  # type: ignore[arg-type]
            setattr(request, name, getattr(text, name))
    return request, chat.stream, chat.include_usage


async def create_multimodal_completion(
    request: Request, user: CurrentUser, request_id: RequestId, multimodal: MultimodalClient
) -> Response:
    check_json_content_type(request)
    generate, stream, include_usage = parse_multimodal_request(await request.body(), request_id)
    if stream:
        return await start_chat_stream(
            request,
            multimodal.generate_stream(generate, user, request_id),
            generate.model,
            include_usage,
        )
    return await unary_response(
        request, multimodal.generate(generate, user, request_id), completion_json
    )


async def list_multimodal_models(
    user: CurrentUser, request_id: RequestId, multimodal: MultimodalClient
) -> Response:
    response = await multimodal.list_models(user, request_id)
    return model_list_response(model_card(m) for m in response.models)


async def get_multimodal_status(
    user: CurrentUser, request_id: RequestId, multimodal: MultimodalClient
) -> Response:
    status = await multimodal.check_status(user, request_id)
    return status_response(status)


def build_router(prefix: str, *, alias: bool = False) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["multimodal"])
    router.add_api_route(
        "/v1/chat/completions",
        create_multimodal_completion,
        methods=["POST"],
        summary="Ask a vision model about images (OpenAI-compatible chat completion)",
        response_model=None,
        include_in_schema=not alias,
        responses={
            200: {
                "model": schemas.ChatCompletion,
                "description": "A chat.completion, or with stream: true server-sent "
                "chat.completion.chunk events ending with data: [DONE]",
                "content": {"text/event-stream": {}},
            },
            **_ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/MultimodalChatCompletionRequest"}
                    }
                },
            }
        },
    )
    router.add_api_route(
        "/v1/models",
        list_multimodal_models,
        methods=["GET"],
        summary="The vision models of your multimodal provider (OpenAI list shape)",
        response_model=None,
        include_in_schema=not alias,
        responses={200: {"model": schemas.ModelList}, **_ERRORS},
    )
    for path in ("/status", "/v1/status"):
        router.add_api_route(
            path,
            get_multimodal_status,
            methods=["GET"],
            summary="Check the connection to your multimodal provider",
            response_model=None,
            responses={200: {"model": schemas.ProviderStatus}, **_ERRORS},
            include_in_schema=path == "/status" and not alias,
        )
    return router


def include_routers(app: FastAPI) -> None:
    app.include_router(build_router(PREFIX))
    app.include_router(build_router(ALIAS_PREFIX, alias=True))
