"""The OpenAI stand-in: ``POST /v1/chat/completions`` (JSON and SSE), ``GET /v1/models``,
and OpenAI's ``{"error": {message, type, param, code}}`` errors. Ollama reuses it for ``/v1/``.
"""

from __future__ import annotations

import itertools
import os
import time
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
from provider_stand_ins.tools import (
    ToolCall,
    json_answer,
    json_pieces,
    openai_tool_call,
    token_logprobs,
    tool_result_text,
)

DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5-mini",
    "o3-mini",
    "gpt-3.5-turbo",
)
MODEL_CREATED = 1_715_367_049
SYSTEM_FINGERPRINT = "fp_stand_in"

_ids = itertools.count(1)
# Unique per process so ids from two stand-in processes never collide.
_ID_PREFIX = f"chatcmpl-{os.getpid():x}x"

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header"
    " using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with"
    " blank username) if you're accessing the API from your browser and are prompted for a"
    " username and password. You can obtain an API key from"
    " https://platform.openai.com/account/api-keys."
)
SERVER_ERROR_MESSAGE = (
    "The server had an error while processing your request. Sorry about that! You can retry your"
    " request, or contact us through our help center at help.openai.com if the error persists."
)


def mask_key(key: str) -> str:
    """A key as OpenAI shows it in a 401: a few characters at each end, the rest starred."""
    if len(key) < 12:
        return "*" * len(key)
    return key[:5] + "*" * (len(key) - 9) + key[-4:]


def error_payload(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class ChatRequest:
    """The parts of a chat completion request the stand-in acts on."""

    __slots__ = (
        "images",
        "include_usage",
        "max_tokens",
        "model",
        "prompt",
        "prompt_tokens",
        "stream",
    )

    def __init__(self, body: dict[str, Any], messages: list[Any]) -> None:
        self.model: str = body["model"]
        self.stream = body.get("stream") is True
        options = body.get("stream_options")
        self.include_usage = bool(self.stream and options and options.get("include_usage"))
        limit = body.get("max_completion_tokens")
        self.max_tokens: int | None = body.get("max_tokens") if limit is None else limit
        # image_url parts count in both forms: {"url": ...} and Ollama's plain string.
        self.prompt, self.prompt_tokens, self.images = read_prompt(
            messages, "image_url", see=vision.openai_part
        )


def _validation_error(body: Any) -> tuple[int, dict[str, Any]] | None:
    """OpenAI's 400 for an invalid chat request, or None if it is valid."""
    if not isinstance(body, dict):
        return 400, error_payload(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't"
            " using your HTTP library correctly. The OpenAI API expects a JSON payload, but what"
            " was sent was not valid JSON.",
            "invalid_request_error",
        )
    if not body.get("model"):
        return 400, error_payload("you must provide a model parameter", "invalid_request_error")
    messages = body.get("messages")
    if messages is None:
        return 400, error_payload(
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            "messages",
            "missing_required_parameter",
        )
    if not isinstance(messages, list) or not messages:
        return 400, error_payload(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an"
            " empty array instead.",
            "invalid_request_error",
            "messages",
            "empty_array",
        )
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            return 400, error_payload(
                "Invalid type for 'temperature': expected a decimal, but got a"
                f" {type(temperature).__name__} instead.",
                "invalid_request_error",
                "temperature",
                "invalid_type",
            )
        if temperature > 2:
            return 400, error_payload(
                "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but"
                f" got {temperature} instead.",
                "invalid_request_error",
                "temperature",
                "decimal_above_max_value",
            )
        if temperature < 0:
            return 400, error_payload(
                "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but"
                f" got {temperature} instead.",
                "invalid_request_error",
                "temperature",
                "decimal_below_min_value",
            )
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return 400, error_payload(
                f"Invalid type for '{name}': expected an integer, but got a"
                f" {type(value).__name__} instead.",
                "invalid_request_error",
                name,
                "invalid_type",
            )
        if value is not None and value < 1:
            return 400, error_payload(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got"
                f" {value} instead.",
                "invalid_request_error",
                name,
                "integer_below_min_value",
            )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return 400, error_payload(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "invalid_request_error",
            "stream_options",
        )
    return None


class ChunkEncoder(StreamEncoder):
    """``data: {chat.completion.chunk}`` events; the content chunks come from byte templates."""

    __slots__ = ("_completion_id", "_created", "_head", "_prompt_tokens", "_tail", "_usage_field")

    def __init__(self, completion_id: str, created: int, request: ChatRequest) -> None:
        self._completion_id = completion_id
        self._created = created
        self._prompt_tokens = request.prompt_tokens
        self._usage_field = b',"usage":null' if request.include_usage else b""
        self._head = b"".join(
            (
                b'data: {"id":"',
                completion_id.encode(),
                b'","object":"chat.completion.chunk","created":',
                str(created).encode(),
                b',"model":',
                orjson.dumps(request.model),
                b',"service_tier":"default","system_fingerprint":"',
                SYSTEM_FINGERPRINT.encode(),
                b'","choices":[',
            )
        )
        self._tail = b"]" + self._usage_field + b"}\n\n"
        self.include_usage = request.include_usage

    def _choice(self, delta: bytes, finish_reason: bytes) -> bytes:
        return b"".join(
            (
                self._head,
                b'{"index":0,"delta":',
                delta,
                b',"logprobs":null,"finish_reason":',
                finish_reason,
                b"}",
                self._tail,
            )
        )

    def opening(self) -> Sequence[bytes]:
        return (self._choice(b'{"role":"assistant","content":"","refusal":null}', b"null"),)

    def piece(self, text: str) -> bytes:
        return self._choice(b'{"content":' + orjson.dumps(text) + b"}", b"null")

    def closing(self, sent: int, truncated: bool) -> Sequence[bytes]:
        reason = b'"length"' if truncated else b'"stop"'
        events = [self._choice(b"{}", reason)]
        if self.include_usage:
            usage = orjson.dumps(_usage(self._prompt_tokens, sent))
            events.append(self._head + b'],"usage":' + usage + b"}\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    def error(self) -> bytes:
        payload = error_payload(SERVER_ERROR_MESSAGE, "server_error")
        return b"data: " + orjson.dumps(payload) + b"\n\n"


def _acts_as_a_model(body: dict[str, Any]) -> bool:
    """Whether the request needs more than the echo: tools, a response format, logprobs, or a
    tool's result to answer."""
    messages = body["messages"]
    return bool(
        body.get("tools")
        or body.get("response_format")
        or body.get("logprobs")
        or (isinstance(messages[-1], dict) and messages[-1].get("role") == "tool")
    )


class ModelChunkEncoder(ChunkEncoder):
    """A streamed tool call (its arguments in pieces, as OpenAI streams them) or content with
    logprobs."""

    __slots__ = ("_call", "_call_id", "_top")

    def __init__(
        self,
        completion_id: str,
        created: int,
        request: ChatRequest,
        call: ToolCall | None,
        call_id: str,
        top: int | None,
    ) -> None:
        super().__init__(completion_id, created, request)
        self._call = call
        self._call_id = call_id
        self._top = top

    def opening(self) -> Sequence[bytes]:
        if self._call is None:
            return super().opening()
        head = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": self._call_id,
                    "type": "function",
                    "function": {"name": self._call.name, "arguments": ""},
                }
            ],
            "refusal": None,
        }
        return (self._choice(orjson.dumps(head), b"null"),)

    def piece(self, text: str) -> bytes:
        if self._call is not None:
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
            return self._choice(orjson.dumps(delta), b"null")
        if self._top is None:
            return super().piece(text)
        logprobs = orjson.dumps({"content": token_logprobs((text,), self._top), "refusal": None})
        return b"".join(
            (
                self._head,
                b'{"index":0,"delta":',
                orjson.dumps({"content": text}),
                b',"logprobs":',
                logprobs,
                b',"finish_reason":null}',
                self._tail,
            )
        )

    def closing(self, sent: int, truncated: bool) -> Sequence[bytes]:
        events = list(super().closing(sent, truncated))
        if self._call is not None and not truncated:
            events[0] = self._choice(b"{}", b'"tool_calls"')
        return events


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class OpenAIProvider(Provider):
    """OpenAI's chat completions and models API."""

    name = "openai"
    default_models = DEFAULT_MODELS
    owned_by = "system"

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("GET", "/v1/models"): self.list_models,
        }

    async def unmatched(self, ex: Exchange) -> None:
        if ex.method == "GET" and ex.path.startswith("/v1/models/"):
            await self.retrieve_model(ex)
            return
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        payload = error_payload(f"Invalid URL ({ex.method} {ex.path})", "invalid_request_error")
        await ex.respond_json(404, payload)
        self.state.finish(record, REJECTED, 404)

    def model_known(self, model: str) -> bool:
        return self.state.model_known(model)

    # --- errors ------------------------------------------------------------------------------

    def error_for(self, status: int, record: RequestRecord) -> dict[str, Any]:
        if status == 401:
            if not record.key:
                return error_payload(NO_KEY_MESSAGE, "invalid_request_error")
            return error_payload(
                f"Incorrect API key provided: {mask_key(record.key)}. You can find your API key at"
                " https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                None,
                "invalid_api_key",
            )
        if status == 429:
            model = record.model or "gpt-4o-mini"
            wait = format_seconds(self.state.behaviour.retry_after_s).decode()
            return error_payload(
                f"Rate limit reached for {model} in organization org-standin on requests per min"
                f" (RPM): Limit 3, Used 3, Requested 1. Please try again in {wait}s. Visit"
                " https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                None,
                "rate_limit_exceeded",
            )
        if status == 404:
            return error_payload(
                f"The model `{record.model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                None,
                "model_not_found",
            )
        if status == 403:
            return error_payload(
                "You are not allowed to sample from this model", "invalid_request_error"
            )
        if status == 503:
            return error_payload(
                "The engine is currently overloaded, please try again later", "server_error"
            )
        if status >= 500:
            return error_payload(SERVER_ERROR_MESSAGE, "server_error")
        return error_payload("Invalid request.", "invalid_request_error")

    def retry_headers(self, status: int) -> Headers:
        if status != 429:
            return JSON_HEADERS
        seconds = format_seconds(self.state.behaviour.retry_after_s)
        return [
            *JSON_HEADERS,
            (b"retry-after", seconds),
            (b"x-ratelimit-limit-requests", b"3"),
            (b"x-ratelimit-remaining-requests", b"0"),
            (b"x-ratelimit-reset-requests", seconds + b"s"),
        ]

    async def send_error(
        self, ex: Exchange, record: RequestRecord, status: int, outcome: str = REJECTED
    ) -> None:
        await ex.respond_json(status, self.error_for(status, record), self.retry_headers(status))
        self.state.finish(record, outcome, status)

    async def _reject(
        self, ex: Exchange, record: RequestRecord, status: int, payload: dict[str, Any]
    ) -> None:
        await ex.respond_json(status, payload)
        self.state.finish(record, REJECTED, status)

    # --- routes ------------------------------------------------------------------------------

    async def chat_completions(self, ex: Exchange) -> None:
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
        invalid = _validation_error(body)
        if invalid is not None:
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                record.model = body["model"]
            await self._reject(ex, record, *invalid)
            return
        try:
            request = ChatRequest(body, body["messages"])
        except vision.ImageRefused as refused:
            record.model = body["model"]
            payload = error_payload(str(refused), "invalid_request_error", None, "invalid_image")
            await self._reject(ex, record, 400, payload)
            return
        record.model = request.model
        record.images = request.images
        record.body = body
        if not self.model_known(request.model):
            await self.send_error(ex, record, 404)
            return

        behaviour = state.behaviour
        if not await self.before_reply(ex, record, behaviour):
            return
        if _acts_as_a_model(body):
            await self.reply_as_model(ex, record, behaviour, body, request)
            return
        words = behaviour.chunks
        truncated = request.max_tokens is not None and request.max_tokens < words
        if truncated:
            words = request.max_tokens  # type: ignore[assignment]
        completion_id = f"{_ID_PREFIX}{next(_ids):012d}"
        created = int(time.time())
        if request.stream:
            pieces = reply_pieces(request.prompt, words)
            encoder = ChunkEncoder(completion_id, created, request)
            await self.reply_stream(ex, record, behaviour, pieces, truncated, encoder)
            return
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": reply_text(request.prompt, words),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "length" if truncated else "stop",
                }
            ],
            "usage": _usage(request.prompt_tokens, words),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        await self.reply_whole(ex, record, behaviour, words, orjson.dumps(payload))

    async def reply_as_model(
        self,
        ex: Exchange,
        record: RequestRecord,
        behaviour: Behaviour,
        body: dict[str, Any],
        request: ChatRequest,
    ) -> None:
        """Tools, a response format, logprobs, or a tool's result to answer (provider_stand_ins.
        tools): the reply a real model gives, as OpenAI frames it."""
        call = openai_tool_call(body)
        answer = None if call else json_answer(body.get("response_format"), request.prompt)
        if call is not None:
            pieces = call.pieces
        elif answer is not None:
            pieces = json_pieces(answer)
        else:
            result = tool_result_text(body["messages"][-1])
            prompt = request.prompt if result is None else result
            pieces = reply_pieces(prompt, behaviour.chunks)
        truncated = request.max_tokens is not None and request.max_tokens < len(pieces)
        if truncated:
            pieces = pieces[: request.max_tokens]
        top = int(body.get("top_logprobs") or 0) if body.get("logprobs") and not call else None
        completion_id = f"{_ID_PREFIX}{next(_ids):012d}"
        call_id = f"call_{_ID_PREFIX}{next(_ids):012d}"
        created = int(time.time())
        if request.stream:
            encoder = ModelChunkEncoder(completion_id, created, request, call, call_id, top)
            await self.reply_stream(ex, record, behaviour, pieces, truncated, encoder)
            return
        text = "".join(pieces)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if call else text,
            "refusal": None,
            "annotations": [],
        }
        if call is not None:
            function = {"name": call.name, "arguments": text}
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
        finish = "length" if truncated else "tool_calls" if call else "stop"
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": (
                        None
                        if top is None
                        else {"content": token_logprobs(pieces, top), "refusal": None}
                    ),
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(request.prompt_tokens, len(pieces)),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        await self.reply_whole(ex, record, behaviour, len(pieces), orjson.dumps(payload))

    def _model_entry(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": self.owned_by}

    async def _authorized(self, ex: Exchange) -> RequestRecord | None:
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        if not self.state.key_accepted(record.key):
            await self.send_error(ex, record, 401)
            return None
        return record

    async def list_models(self, ex: Exchange) -> None:
        record = await self._authorized(ex)
        if record is None:
            return
        data = [self._model_entry(model) for model in self.state.models]
        await ex.respond_json(200, {"object": "list", "data": data})
        self.state.finish(record, COMPLETED, 200)

    async def retrieve_model(self, ex: Exchange) -> None:
        record = await self._authorized(ex)
        if record is None:
            return
        record.model = ex.path[len("/v1/models/") :]
        if record.model not in self.state.models:
            await self.send_error(ex, record, 404)
            return
        await ex.respond_json(200, self._model_entry(record.model))
        self.state.finish(record, COMPLETED, 200)
