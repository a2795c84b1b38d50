"""The Anthropic stand-in: ``POST /v1/messages`` (JSON and ``event:``/``data:`` SSE with pings),
``GET /v1/models``, and the ``{"type": "error", "error": {type, message}}`` errors.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import orjson

from provider_stand_ins import vision
from provider_stand_ins.app import (
    JSON_HEADERS,
    Exchange,
    Handler,
    Headers,
    Provider,
    StreamEncoder,
    format_seconds,
)
from provider_stand_ins.behaviour import Behaviour, read_prompt, reply_pieces, reply_text
from provider_stand_ins.state import COMPLETED, REJECTED, RequestRecord
from provider_stand_ins.tools import ToolCall, anthropic_tool_call, tool_result_text

DEFAULT_MODELS = (
    "claude-3-5-haiku-20241022",
    "claude-3-5-haiku-latest",
    "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-20250514",
    "claude-opus-4-20250514",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
)
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"

# Error type and message per status (https://docs.claude.com/en/api/errors).
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per"
        " minute. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

_ids = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}x"


def api_key(ex: Exchange) -> str | None:
    """The caller's key: ``x-api-key``, or a Bearer token as anthropic SDK 2.x sends it."""
    key = ex.header(b"x-api-key")
    return key if key is not None else ex.bearer_key()


def error_payload(type_: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}


def _event(name: str, payload: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


PING_EVENT = _event("ping", {"type": "ping"})
BLOCK_START_EVENT = _event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
BLOCK_STOP_EVENT = _event("content_block_stop", {"type": "content_block_stop", "index": 0})
MESSAGE_STOP_EVENT = _event("message_stop", {"type": "message_stop"})
DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
DELTA_TAIL = b"}}\n\n"
OVERLOADED_EVENT = _event(
    "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
)


class MessagesRequest:
    """The parts of a messages request the stand-in acts on."""

    __slots__ = ("images", "max_tokens", "model", "prompt", "prompt_tokens", "stream")

    def __init__(self, body: dict[str, Any]) -> None:
        self.model: str = body["model"]
        self.max_tokens: int = body["max_tokens"]
        self.stream = body.get("stream") is True
        self.prompt, self.prompt_tokens, self.images = read_prompt(
            body["messages"], "image", system=body.get("system"), see=vision.anthropic_block
        )


def _validation_error(body: Any) -> str | None:
    """The message of Anthropic's 400 for an invalid messages request, or None if valid."""
    if not isinstance(body, dict):
        return "There was an issue with your request body: the body is not valid JSON"
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["model"], str):
        return "model: Input should be a valid string"
    if not isinstance(body["messages"], list):
        return "messages: Input should be a valid list"
    if not body["messages"]:
        return "messages: at least one message is required"
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return "max_tokens: Input should be a valid integer"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            return "temperature: Input should be a valid number"
        if temperature > 1:
            return "temperature: Input should be less than or equal to 1"
        if temperature < 0:
            return "temperature: Input should be greater than or equal to 0"
    return None


class EventEncoder(StreamEncoder):
    """Anthropic's named events: message_start, ping, content blocks, message_delta, stop."""

    __slots__ = ("_message_id", "_model", "_prompt_tokens")

    def __init__(self, message_id: str, request: MessagesRequest) -> None:
        self._message_id = message_id
        self._model = request.model
        self._prompt_tokens = request.prompt_tokens

    def opening(self) -> Sequence[bytes]:
        start = {
            "type": "message_start",
            "message": {
                "id": self._message_id,
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": _usage(self._prompt_tokens, 1),
            },
        }
        return (_event("message_start", start), PING_EVENT, BLOCK_START_EVENT)

    def piece(self, text: str) -> bytes:
        return DELTA_HEAD + orjson.dumps(text) + DELTA_TAIL

    def closing(self, sent: int, truncated: bool) -> Sequence[bytes]:
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": "max_tokens" if truncated else "end_turn",
                "stop_sequence": None,
            },
            "usage": {"output_tokens": sent},
        }
        return (BLOCK_STOP_EVENT, _event("message_delta", delta), MESSAGE_STOP_EVENT)

    def error(self) -> bytes:
        return OVERLOADED_EVENT


class ToolUseEncoder(EventEncoder):
    """A tool_use content block whose input streams as input_json_delta pieces."""

    __slots__ = ("_call", "_tool_use_id")

    def __init__(
        self, message_id: str, request: MessagesRequest, call: ToolCall, tool_use_id: str
    ) -> None:
        super().__init__(message_id, request)
        self._call = call
        self._tool_use_id = tool_use_id

    def opening(self) -> Sequence[bytes]:
        message_start, ping, _ = super().opening()
        block = {"type": "tool_use", "id": self._tool_use_id, "name": self._call.name, "input": {}}
        start = {"type": "content_block_start", "index": 0, "content_block": block}
        return (message_start, ping, _event("content_block_start", start))

    def piece(self, text: str) -> bytes:
        delta = {"type": "input_json_delta", "partial_json": text}
        return _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )

    def closing(self, sent: int, truncated: bool) -> Sequence[bytes]:
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": "max_tokens" if truncated else "tool_use",
                "stop_sequence": None,
            },
            "usage": {"output_tokens": sent},
        }
        return (BLOCK_STOP_EVENT, _event("message_delta", delta), MESSAGE_STOP_EVENT)


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


class AnthropicProvider(Provider):
    """Anthropic's Messages and Models API."""

    name = "anthropic"
    default_models = DEFAULT_MODELS

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/messages"): self.create_message,
            ("GET", "/v1/models"): self.list_models,
        }

    async def unmatched(self, ex: Exchange) -> None:
        if ex.method == "GET" and ex.path.startswith("/v1/models/"):
            await self.retrieve_model(ex)
            return
        record = self.state.begin(ex.method, ex.path, api_key(ex))
        await self.send_error(ex, record, 404)

    # --- errors ------------------------------------------------------------------------------

    def retry_headers(self, status: int) -> Headers:
        if status != 429:
            return JSON_HEADERS
        return [
            *JSON_HEADERS,
            (b"retry-after", format_seconds(self.state.behaviour.retry_after_s)),
            (b"anthropic-ratelimit-requests-limit", b"50"),
            (b"anthropic-ratelimit-requests-remaining", b"0"),
        ]

    async def send_error(
        self,
        ex: Exchange,
        record: RequestRecord,
        status: int,
        outcome: str = REJECTED,
        message: str | None = None,
    ) -> None:
        default_type = "api_error" if status >= 500 else "invalid_request_error"
        type_, default_message = ERRORS.get(status, (default_type, "Error"))
        if status == 401 and record.key is None:
            default_message = "x-api-key header is required"
        payload = error_payload(type_, message or default_message, f"req_{_ID_PREFIX}{record.seq}")
        await ex.respond_json(status, payload, self.retry_headers(status))
        self.state.finish(record, outcome, status)

    async def _authorized(self, ex: Exchange) -> RequestRecord | None:
        record = self.state.begin(ex.method, ex.path, api_key(ex))
        if not self.state.key_accepted(record.key):
            await self.send_error(ex, record, 401)
            return None
        if ex.header(b"anthropic-version") is None:
            await self.send_error(ex, record, 400, message="anthropic-version: header is required")
            return None
        return record

    # --- routes ------------------------------------------------------------------------------

    async def create_message(self, ex: Exchange) -> None:
        state = self.state
        raw = await ex.read_body()
        record = await self._authorized(ex)
        if record is None:
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        invalid = _validation_error(body)
        if invalid is not None:
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                record.model = body["model"]
            await self.send_error(ex, record, 400, message=invalid)
            return
        try:
            request = MessagesRequest(body)
        except vision.ImageRefused as refused:
            record.model = body["model"]
            await self.send_error(ex, record, 400, message=str(refused))
            return
        record.model = request.model
        record.images = request.images
        record.body = body
        if not state.model_known(request.model):
            await self.send_error(ex, record, 404, message=f"model: {request.model}")
            return

        behaviour: Behaviour = state.behaviour
        if not await self.before_reply(ex, record, behaviour):
            return
        call = anthropic_tool_call(body)
        if call is not None:
            await self.reply_tool_use(ex, record, behaviour, request, call)
            return
        result = tool_result_text(body["messages"][-1])  # a tool's result: answer with it
        prompt = request.prompt if result is None else result
        words = behaviour.chunks
        truncated = request.max_tokens < words
        if truncated:
            words = request.max_tokens
        message_id = f"msg_{_ID_PREFIX}{next(_ids):016d}"
        if request.stream:
            pieces = reply_pieces(prompt, words)
            encoder = EventEncoder(message_id, request)
            await self.reply_stream(ex, record, behaviour, pieces, truncated, encoder)
            return
        payload = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": reply_text(prompt, words)}],
            "stop_reason": "max_tokens" if truncated else "end_turn",
            "stop_sequence": None,
            "usage": _usage(request.prompt_tokens, words),
        }
        await self.reply_whole(ex, record, behaviour, words, orjson.dumps(payload))

    async def reply_tool_use(
        self,
        ex: Exchange,
        record: RequestRecord,
        behaviour: Behaviour,
        request: MessagesRequest,
        call: ToolCall,
    ) -> None:
        """A tool_use block (streamed as input_json_delta pieces), stop_reason tool_use."""
        pieces = call.pieces
        truncated = request.max_tokens < len(pieces)
        if truncated:
            pieces = pieces[: request.max_tokens]
        message_id = f"msg_{_ID_PREFIX}{next(_ids):016d}"
        tool_use_id = f"toolu_{_ID_PREFIX}{next(_ids):016d}"
        if request.stream:
            encoder = ToolUseEncoder(message_id, request, call, tool_use_id)
            await self.reply_stream(ex, record, behaviour, pieces, truncated, encoder)
            return
        block = {"type": "tool_use", "id": tool_use_id, "name": call.name, "input": call.arguments}
        payload = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [block],
            "stop_reason": "max_tokens" if truncated else "tool_use",
            "stop_sequence": None,
            "usage": _usage(request.prompt_tokens, len(pieces)),
        }
        await self.reply_whole(ex, record, behaviour, len(pieces), orjson.dumps(payload))

    @staticmethod
    def _model_entry(model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": model.replace("-", " ").title(),
            "created_at": MODEL_CREATED_AT,
        }

    async def list_models(self, ex: Exchange) -> None:
        record = await self._authorized(ex)
        if record is None:
            return
        query = ex.query()
        models = list(self.state.models)
        if "after_id" in query and query["after_id"] in models:
            models = models[models.index(query["after_id"]) + 1 :]
        try:
            limit = max(1, min(1000, int(query.get("limit", "20"))))
        except ValueError:
            await self.send_error(ex, record, 400, message="limit: Input should be a valid integer")
            return
        page = models[:limit]
        await ex.respond_json(
            200,
            {
                "data": [self._model_entry(model) for model in page],
                "has_more": len(models) > limit,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            },
        )
        self.state.finish(record, COMPLETED, 200)

    async def retrieve_model(self, ex: Exchange) -> None:
        record = await self._authorized(ex)
        if record is None:
            return
        record.model = ex.path[len("/v1/models/") :]
        if record.model not in self.state.models:
            await self.send_error(ex, record, 404, message=f"model: {record.model}")
            return
        await ex.respond_json(200, self._model_entry(record.model))
        self.state.finish(record, COMPLETED, 200)
