"""The text proxy: OpenAI-compatible chat completions, model list and status, over text-svc.

Served under /api/text-proxy and, for older clients, /api/llm-proxy: `build_router(prefix)` makes
one router per prefix, so that each route knows its full path (metrics and traces label by it).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from gateway import schemas
from gateway.chat import completion_json, parse_chat_request
from gateway.deps import CurrentUser, RequestId, TextClient
from gateway.errors import ApiError
from gateway.responses import parse_responses_request, response_json, start_responses_stream
from gateway.routes._common import (
    check_json_content_type,
    error_responses,
    json_response,
    model_card,
    model_list_response,
    status_response,
    unary_response,
)
from gateway.streaming import start_chat_stream
from grpc_stubs.text.v1 import text_pb2

_ERRORS = error_responses(400, 401, 402, 404, 413, 415, 429, 503, 504)


async def create_chat_completion(
    request: Request,
    user: CurrentUser,
    request_id: RequestId,
    text: TextClient,
) -> Response:
    check_json_content_type(request)
    chat = parse_chat_request(await request.body(), request_id)
    if chat.stream:
        return await start_chat_stream(
            request,
            text.generate_stream(chat.generate, user, request_id),
            chat.generate.model,
            chat.include_usage,
        )
    return await unary_response(
        request, text.generate(chat.generate, user, request_id), completion_json
    )


async def create_response(
    request: Request,
    user: CurrentUser,
    request_id: RequestId,
    text: TextClient,
) -> Response:
    check_json_content_type(request)
    parsed = parse_responses_request(await request.body(), request_id)
    if parsed.stream:
        return await start_responses_stream(
            request, text.generate_stream(parsed.generate, user, request_id), parsed
        )
    return await unary_response(
        request,
        text.generate(parsed.generate, user, request_id),
        lambda response: response_json(response, parsed.echo),
    )


# A model whose provider tells no created time (a configured model, a local server's) is dated
# when this gateway started: a real time, stable between calls.
_STARTED = int(time.time())


def _model_card(m: text_pb2.Model) -> dict[str, Any]:
    return model_card(m, m.created or _STARTED)


async def list_models(user: CurrentUser, request_id: RequestId, text: TextClient) -> Response:
    response = await text.list_models(user, request_id)
    return model_list_response(_model_card(m) for m in response.models)


async def get_model(
    model: str, user: CurrentUser, request_id: RequestId, text: TextClient
) -> Response:
    response = await text.list_models(user, request_id)
    for m in response.models:
        if m.id == model:
            return json_response(_model_card(m))
    raise ApiError(
        404,
        f"The model '{model[:256]}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


async def get_status(user: CurrentUser, request_id: RequestId, text: TextClient) -> Response:
    status = await text.check_status(user, request_id)
    return status_response(status)


def build_router(prefix: str, *, deprecated: bool = False) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["text"], deprecated=deprecated)
    router.add_api_route(
        "/v1/chat/completions",
        create_chat_completion,
        methods=["POST"],
        summary="Create a chat completion (OpenAI-compatible)",
        response_model=None,
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
                        "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                    }
                },
            }
        },
    )
    router.add_api_route(
        "/v1/responses",
        create_response,
        methods=["POST"],
        summary="Create a response (OpenAI Responses API, stateless)",
        description="input, instructions, function tools, tool_choice, text.format, "
        "max_output_tokens, temperature and stream. Nothing is stored: previous_response_id, "
        "store: true, background and built-in tools are refused with a 400.",
        response_model=None,
        responses={
            200: {
                "model": schemas.ResponseObject,
                "description": "A response object, or with stream: true the Responses "
                "server-sent events (response.created ... response.completed)",
                "content": {"text/event-stream": {}},
            },
            **_ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    router.add_api_route(
        "/v1/models/{model:path}",
        get_model,
        methods=["GET"],
        summary="One model of your text provider (OpenAI model shape)",
        response_model=None,
        responses={200: {"model": schemas.ModelCard}, **_ERRORS},
    )
    router.add_api_route(
        "/v1/models",
        list_models,
        methods=["GET"],
        summary="The models of your text provider (OpenAI list shape)",
        response_model=None,
        responses={200: {"model": schemas.ModelList}, **_ERRORS},
    )
    for path in ("/status", "/v1/status"):
        router.add_api_route(
            path,
            get_status,
            methods=["GET"],
            summary="Check the connection to your text provider",
            response_model=None,
            responses={200: {"model": schemas.ProviderStatus}, **_ERRORS},
            include_in_schema=path == "/status",
        )
    # OpenAI clients built with a trailing slash in the base URL (or a path) call ".../path/": the
    # same handler answers there, unlisted, rather than a redirect SDKs do not follow for POST.
    for route in list(router.routes):
        if isinstance(route, APIRoute) and not route.path.endswith(("/", "}")):
            router.add_api_route(
                route.path.removeprefix(prefix) + "/",
                route.endpoint,
                methods=list(route.methods or ()),
                response_model=None,
                include_in_schema=False,
            )
    return router
