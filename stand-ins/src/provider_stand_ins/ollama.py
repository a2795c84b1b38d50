"""The Ollama stand-in: ``POST /api/chat`` (NDJSON stream by default, or one object),
``GET /api/tags``, ``GET /api/version``, ``{"error": "..."}`` errors, and the OpenAI-compatible
API under ``/v1/`` on the same server, as Ollama serves it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
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
)
from provider_stand_ins.behaviour import reply_pieces
from provider_stand_ins.openai import OpenAIProvider
from provider_stand_ins.state import COMPLETED, REJECTED, RequestRecord, StandInState
from provider_stand_ins.tools import (
    ToolCall,
    json_answer,
    json_pieces,
    openai_tool_call,
    tool_result_text,
)

DEFAULT_MODELS = ("llama3.2:latest", "llama3:latest", "qwen2.5:0.5b", "llava:latest")
VERSION = "0.12.3"
NDJSON_HEADERS: Headers = [(b"content-type", b"application/x-ndjson")]
MODIFIED_AT = "2025-01-01T00:00:00.000000000Z"

ERRORS: dict[int, str] = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    429: "rate limit exceeded, please try again later",
    500: "an error was encountered while running the model: unexpected EOF",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
RUN_ERROR = orjson.dumps({"error": "an error was encountered while running the model"}) + b"\n"


def full_name(model: str) -> str:
    """Ollama's name for a model: ``llama3.2`` means ``llama3.2:latest``."""
    return model if ":" in model else model + ":latest"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ChatRequest:
    """The parts of an ``/api/chat`` request the stand-in acts on."""

    __slots__ = ("images", "max_tokens", "model", "prompt", "prompt_tokens", "stream")

    def __init__(self, body: dict[str, Any]) -> None:
        self.model: str = body["model"]
        self.stream = body.get("stream", True) is not False
        options = body.get("options") or {}
        limit = options.get("num_predict") if isinstance(options, dict) else None
        self.max_tokens: int | None = limit if isinstance(limit, int) and limit >= 0 else None
        self.images = 0
        self.prompt = ""
        tokens = 0
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            text = content if isinstance(content, str) else ""
            tokens += len(text.split())
            images = message.get("images")
            if isinstance(images, list):
                self.images += len(images)
                for image in images:  # raw base64 only, as Ollama decodes them
                    word, image_tokens = vision.ollama_image(image)
                    text = f"{text} {word}"
                    tokens += image_tokens
            if message.get("role") == "user":
                self.prompt = text
        self.prompt_tokens = tokens


class LineEncoder(StreamEncoder):
    """One JSON object per line; the last one has ``done: true`` and the counts."""

    __slots__ = ("_head", "_model", "_prompt_tokens", "_started_ns", "created_at")

    def __init__(self, request: ChatRequest, started_ns: int) -> None:
        self._model = request.model
        self._prompt_tokens = request.prompt_tokens
        self._started_ns = started_ns
        self.created_at = _now()
        self._head = b"".join(
            (
                b'{"model":',
                orjson.dumps(request.model),
                b',"created_at":"',
                self.created_at.encode(),
                b'","message":{"role":"assistant","content":',
            )
        )

    def piece(self, text: str) -> bytes:
        return self._head + orjson.dumps(text) + b'},"done":false}\n'

    def final(self, content: str, sent: int, truncated: bool) -> dict[str, Any]:
        total = time.perf_counter_ns() - self._started_ns
        return {
            "model": self._model,
            "created_at": self.created_at,
            "message": {"role": "assistant", "content": content},
            "done_reason": "length" if truncated else "stop",
            "done": True,
            "total_duration": total,
            "load_duration": total // 10,
            "prompt_eval_count": self._prompt_tokens,
            "prompt_eval_duration": total // 10,
            "eval_count": sent,
            "eval_duration": total - total // 5,
        }

    def closing(self, sent: int, truncated: bool) -> Sequence[bytes]:
        return (orjson.dumps(self.final("", sent, truncated)) + b"\n",)

    def error(self) -> bytes:
        return RUN_ERROR


class ToolCallLineEncoder(LineEncoder):
    """A tool call in one line (arguments as a JSON object), then the done line."""

    __slots__ = ("_call", "tool_calls")

    def __init__(self, request: ChatRequest, started_ns: int, call: ToolCall) -> None:
        super().__init__(request, started_ns)
        self._call = call
        self.tool_calls = [{"function": {"name": call.name, "arguments": call.arguments}}]

    def piece(self, text: str) -> bytes:
        line = {
            "model": self._model,
            "created_at": self.created_at,
            "message": {"role": "assistant", "content": "", "tool_calls": self.tool_calls},
            "done": False,
        }
        return orjson.dumps(line) + b"\n"

    def closing(self, sent: int, truncated: bool) -> Sequence[bytes]:
        return (orjson.dumps(self.final("", len(self._call.pieces), truncated)) + b"\n",)


class OllamaOpenAIProvider(OpenAIProvider):
    """Ollama's OpenAI-compatible ``/v1/`` API: the key is required by clients but ignored."""

    name = "ollama"
    owned_by = "library"

    def model_known(self, model: str) -> bool:
        return self.state.model_known(full_name(model))


class OllamaProvider(Provider):
    """Ollama's native API plus its OpenAI-compatible API."""

    name = "ollama"
    default_models = DEFAULT_MODELS
    stream_headers = NDJSON_HEADERS

    def __init__(self, state: StandInState) -> None:
        super().__init__(state)
        self.openai = OllamaOpenAIProvider(state)

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/api/chat"): self.chat,
            ("GET", "/api/tags"): self.tags,
            ("GET", "/api/version"): self.version,
            ("GET", "/"): self.root,
            **self.openai.routes(),
        }

    async def unmatched(self, ex: Exchange) -> None:
        if ex.path.startswith("/v1/"):
            await self.openai.unmatched(ex)
            return
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        await ex.respond(404, b"404 page not found", [(b"content-type", b"text/plain")])
        self.state.finish(record, REJECTED, 404)

    def retry_headers(self, status: int) -> Headers:
        return self.openai.retry_headers(status) if status == 429 else JSON_HEADERS

    async def send_error(
        self,
        ex: Exchange,
        record: RequestRecord,
        status: int,
        outcome: str = REJECTED,
        message: str | None = None,
    ) -> None:
        text = message or ERRORS.get(status, "error")
        await ex.respond_json(status, {"error": text}, self.retry_headers(status))
        self.state.finish(record, outcome, status)

    async def _authorized(self, ex: Exchange) -> RequestRecord | None:
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        if not self.state.key_accepted(record.key):
            await self.send_error(ex, record, 401)
            return None
        return record

    async def chat(self, ex: Exchange) -> None:
        started_ns = time.perf_counter_ns()
        state = self.state
        raw = await ex.read_body()
        record = await self._authorized(ex)
        if record is None:
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            await self.send_error(ex, record, 400, message=str(error))
            return
        if not isinstance(body, dict):
            await self.send_error(ex, record, 400, message="invalid request body")
            return
        if not isinstance(body.get("model"), str) or not body["model"]:
            await self.send_error(ex, record, 400, message="model is required")
            return
        try:
            request = ChatRequest(body)
        except vision.ImageRefused as refused:
            record.model = body["model"]
            await self.send_error(ex, record, 400, message=str(refused))
            return
        record.model = request.model
        record.images = request.images
        record.body = body
        if not state.model_known(full_name(request.model)):
            message = f'model "{request.model}" not found, try pulling it first'
            await self.send_error(ex, record, 404, message=message)
            return

        behaviour = state.behaviour
        if not await self.before_reply(ex, record, behaviour):
            return
        call = openai_tool_call(body)  # Ollama takes tools in OpenAI's shape
        if call is not None:
            tool_encoder = ToolCallLineEncoder(request, started_ns, call)
            if request.stream:  # Ollama streams a tool call whole, in one line
                await self.reply_stream(ex, record, behaviour, ("",), False, tool_encoder)
                return
            payload = tool_encoder.final("", len(call.pieces), False)
            payload["message"]["tool_calls"] = tool_encoder.tool_calls
            await self.reply_whole(ex, record, behaviour, 1, orjson.dumps(payload))
            return
        result = tool_result_text((body.get("messages") or [None])[-1])
        prompt = request.prompt if result is None else result
        answer = json_answer(body.get("format"), prompt)
        pieces = reply_pieces(prompt, behaviour.chunks) if answer is None else json_pieces(answer)
        words = len(pieces)
        truncated = request.max_tokens is not None and request.max_tokens < words
        if truncated:
            words = request.max_tokens  # type: ignore[assignment]
            pieces = pieces[:words]
        encoder = LineEncoder(request, started_ns)
        if request.stream:
            await self.reply_stream(ex, record, behaviour, pieces, truncated, encoder)
            return
        payload = encoder.final("".join(pieces), words, truncated)
        await self.reply_whole(ex, record, behaviour, words, orjson.dumps(payload))

    async def tags(self, ex: Exchange) -> None:
        record = await self._authorized(ex)
        if record is None:
            return
        models = [_tag(name) for name in self.state.models]
        await ex.respond_json(200, {"models": models})
        self.state.finish(record, COMPLETED, 200)

    async def version(self, ex: Exchange) -> None:
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        await ex.respond_json(200, {"version": VERSION})
        self.state.finish(record, COMPLETED, 200)

    async def root(self, ex: Exchange) -> None:
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        await ex.respond(
            200, b"Ollama is running", [(b"content-type", b"text/plain; charset=utf-8")]
        )
        self.state.finish(record, COMPLETED, 200)


def _tag(name: str) -> dict[str, Any]:
    family = name.split(":")[0].rstrip("0123456789.") or name
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": 2_019_393_189,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }
