"""The text proxy: OpenAI-compatible chat completions, model list and status, over text-svc.

Served under /api/text-proxy and, for older clients, /api/llm-proxy: `build_router(prefix)` makes
one router per prefix, so that each route knows its full path (metrics and traces label by it).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway import schemas
from gateway.chat import ChatRequest, ChunkWriter, completion_json, parse_chat_request
from gateway.clients import CallCancelled, ModelStream
from gateway.deps import CurrentUser, RequestId, TextClient
from gateway.errors import ApiError
from gateway.lean_route import LeanRoute
from gateway.metrics import Metrics
from gateway.streaming import DisconnectWatcher, EventStreamResponse
from grpc_stubs.text.v1 import text_pb2

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorResponse}
    for status in (400, 401, 402, 404, 413, 415, 429, 503, 504)
}
log = logging.getLogger("gateway.text")
_CREDITS_HEADER = "x-credits-remaining"
_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _check_json_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            f"unsupported content type '{media_type}': send the body as application/json",
            code="unsupported_media_type",
        )


async def create_chat_completion(
    request: Request,
    user: CurrentUser,
    request_id: RequestId,
    text: TextClient,
) -> Response:
    _check_json_content_type(request)
    chat = parse_chat_request(await request.body(), request_id)
    if chat.stream:
        metrics = request.app.state.metrics
        return await _start_stream(
            request,
            text.generate_stream(chat.generate, user, request_id),
            chat,
            request_id,
            metrics,
        )
    call = text.generate(chat.generate, user, request_id)
    watcher = DisconnectWatcher(request.receive, call.cancel)
    try:
        response = await call.result()
    except CallCancelled:
        # Nobody reads the answer; 499 is what the metrics record.
        return Response(status_code=499)
    finally:
        watcher.stop()
    headers = {}
    if response.balance_micros >= 0:
        headers[_CREDITS_HEADER] = str(response.balance_micros)
    return Response(completion_json(response), headers=headers, media_type="application/json")


async def _start_stream(
    request: Request, stream: ModelStream, chat: ChatRequest, request_id: str, metrics: Metrics
) -> Response:
    watcher = DisconnectWatcher(request.receive, stream.cancel)
    # Wait for the first event before answering: an error here (no credits, bad key, unknown
    # model) is still a plain HTTP error with the right status, which SDKs turn into the right
    # exception.
    try:
        first = await stream.read()
    except BaseException as err:
        watcher.stop()
        stream.cancel()
        if isinstance(err, CallCancelled):
            return Response(status_code=499)
        raise
    headers = dict(_STREAM_HEADERS)
    if first is not None and first.WhichOneof("event") == "start":
        start = first.start
        writer = ChunkWriter(
            start.id,
            start.model or chat.generate.model,
            start.created or int(time.time()),
            chat.include_usage,
        )
        if start.balance_micros >= 0:
            headers[_CREDITS_HEADER] = str(start.balance_micros)
        pending = None
    else:
        # No start event (the stream failed first): no generation id, so a fresh one.
        writer = ChunkWriter(
            uuid.uuid4().hex, chat.generate.model, int(time.time()), chat.include_usage
        )
        pending = first
    return EventStreamResponse(
        _events(stream, writer, pending, chat.include_usage, metrics), watcher, headers
    )


async def _events(
    stream: ModelStream,
    writer: ChunkWriter,
    pending: text_pb2.GenerateStreamResponse | None,
    include_usage: bool,
    metrics: Metrics,
) -> AsyncIterator[bytes]:
    metrics.streams.inc()
    try:
        yield writer.role()
        message = pending or await stream.read()
        while message is not None:
            kind = message.WhichOneof("event")
            if kind == "delta":
                if message.delta.content:
                    yield writer.content(message.delta.content)
            elif kind == "finish":
                # The end in one write: the finish chunk, the usage chunk, [DONE].
                end = writer.finish(message.finish.finish_reason)
                if include_usage:
                    usage = message.finish.usage
                    end += writer.usage(usage.input_tokens, usage.output_tokens)
                yield end + ChunkWriter.DONE
                await _drain(stream)
                return
            message = await stream.read()
        yield ChunkWriter.error(
            ApiError(502, "the model's stream ended before it finished", code="upstream_error")
        )
    except ApiError as err:
        # The status line has gone out: the error becomes one event, which the openai SDK raises
        # as APIError, and the stream ends without [DONE].
        yield ChunkWriter.error(err)
    except CallCancelled:
        return  # the client went away: nobody to tell
    except Exception:
        # A bug of ours after the status line: the client still gets an error event it can
        # read, not a connection cut mid-stream.
        log.exception("the stream failed after its first event")
        yield ChunkWriter.error(
            ApiError(500, "the gateway failed while streaming the answer", code="server_error")
        )
    finally:
        stream.cancel()
        metrics.streams.dec()


async def _drain(stream: ModelStream) -> None:
    """Reads the call to its end rather than cancelling it: text-svc may still be settling the
    request (its usage event) after the last event, and a cancel could cut that short."""
    try:
        while await stream.read() is not None:
            pass
    except ApiError:
        pass  # the answer is complete; a late failure is text-svc's to log


async def list_models(user: CurrentUser, request_id: RequestId, text: TextClient) -> Response:
    response = await text.list_models(user, request_id)
    body = {
        "object": "list",
        "data": [
            {"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by or m.provider}
            for m in response.models
        ],
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def get_status(user: CurrentUser, request_id: RequestId, text: TextClient) -> Response:
    status = await text.check_status(user, request_id)
    body = {
        "ok": status.ok,
        "provider": status.provider,
        "model": status.model,
        "detail": status.detail,
        "latency_ms": status.latency_ms,
    }
    return Response(orjson.dumps(body), media_type="application/json")


def build_router(prefix: str, *, deprecated: bool = False) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["text"], deprecated=deprecated, route_class=LeanRoute)
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
    return router
