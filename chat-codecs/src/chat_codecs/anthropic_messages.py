"""Anthropic Messages (`POST {base}/v1/messages`, SSE with `event:` names, `x-api-key` and
`anthropic-version` headers). Images go as base64 `source` blocks (or `url` sources), tool calls as
`tool_use` blocks, tool results as `tool_result` blocks in a user message.

Anthropic has no response format: structured output is the established translation, a forced tool
whose input schema is the response schema, and that tool's input comes back as the message's text
(whole, or streamed from its `input_json_delta`s). Anthropic gives no logprobs: asking is a 400."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from chat_codecs.codec import base64_text, not_encodable, unix_time
from chat_codecs.types import (
    ChatRequest,
    Completion,
    Delta,
    Finish,
    ImagePart,
    Message,
    ModelInfo,
    StreamEvent,
    TextPart,
    TokenUsage,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
)
from upstream import Failure, ProviderError, ServerSentEvent

ANTHROPIC_VERSION = "2023-06-01"
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}
# Error types Anthropic sends inside a 200 stream, by what they mean for a retry.
_STREAM_ERRORS = {
    "overloaded_error": Failure.UNAVAILABLE,
    "rate_limit_error": Failure.RATE_LIMITED,
    "api_error": Failure.ERROR,
}
# OpenAI's tool_choice strings in Anthropic's terms.
_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
# The forced tool that carries a response format; a caller's tool may not take its name (its
# calls would come back as text).
RESPONSE_TOOL = "json_response"
# json_object promises only "some JSON object".
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


class AnthropicMessages:
    chat_path = "/v1/messages"
    models_path = "/v1/models?limit=1000"
    framing: Literal["sse", "ndjson"] = "sse"
    malformed = "the provider sent a malformed event"

    def headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}

    def request_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.text for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request.messages),
            # Required by Anthropic; a service always sets it for this protocol.
            "max_tokens": request.max_tokens,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.logprobs:
            raise not_encodable("Anthropic models do not return logprobs", "logprobs")
        if request.tools:
            if any(t.name == RESPONSE_TOOL for t in request.tools):
                raise not_encodable(
                    f"the tool name {RESPONSE_TOOL!r} is reserved for response_format on "
                    "Anthropic models: rename the tool",
                    "tools",
                )
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in request.tools
            ]
        choice = _tool_choice(request.tool_choice) if request.tool_choice is not None else None
        schema = _response_schema(request.response_format)
        if schema is not None:
            if request.tools:
                raise not_encodable(
                    "response_format cannot be combined with tools for Anthropic models: "
                    "it is carried by a forced tool",
                    "response_format",
                )
            body["tools"] = [
                {
                    "name": RESPONSE_TOOL,
                    "description": "Answer with the response, as this tool's input.",
                    "input_schema": schema,
                }
            ]
            choice = {"type": "tool", "name": RESPONSE_TOOL}
        if request.parallel_tool_calls is False and request.tools:
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        if choice is not None:
            body["tool_choice"] = choice
        if stream:
            body["stream"] = True
        return body

    def completion(self, answer: Any) -> Completion:
        try:
            usage = answer["usage"]
            blocks = answer["content"]
            finish_reason = _FINISH_REASONS.get(answer.get("stop_reason") or "end_turn", "stop")
            text = "".join(b["text"] for b in blocks if b.get("type") == "text")
            for b in blocks:
                if b.get("type") == "tool_use" and b["name"] == RESPONSE_TOOL:
                    # A response format's answer: the forced tool's input is the content.
                    text += orjson.dumps(b.get("input") or {}).decode()
                    finish_reason = "stop" if finish_reason == "tool_calls" else finish_reason
            return Completion(
                text=text,
                finish_reason=finish_reason,
                usage=TokenUsage(usage["input_tokens"], usage["output_tokens"]),
                tool_calls=tuple(
                    ToolCallPart(b["id"], b["name"], orjson.dumps(b.get("input") or {}).decode())
                    for b in blocks
                    if b.get("type") == "tool_use" and b["name"] != RESPONSE_TOOL
                ),
            )
        except (KeyError, TypeError, AttributeError):
            raise ProviderError(Failure.ERROR, "the answer was not a message") from None

    def stream_decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def models(self, answer: Any) -> list[ModelInfo]:
        return [
            ModelInfo(m["id"], "anthropic", unix_time(m.get("created_at")))
            for m in answer.get("data", [])
            if isinstance(m, dict) and m.get("id")
        ]


class AnthropicStreamDecoder:
    __slots__ = (
        "_response_blocks",
        "_tools",
        "done",
        "finished",
        "input_tokens",
        "output_tokens",
        "stop_reason",
    )

    def __init__(self) -> None:
        self.done = False  # Anthropic's stream simply ends after message_stop
        self.finished = False
        self.input_tokens: int | None = None
        self.output_tokens = 0  # cumulative in each message_delta: the last one counts
        self.stop_reason: str | None = None
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._response_blocks: set[int] = set()  # blocks of the response format's forced tool

    def feed(self, item: ServerSentEvent) -> Sequence[StreamEvent]:
        kind, data = item.event, item.data
        if kind == "content_block_delta":
            event = orjson.loads(data)
            delta = event["delta"]
            delta_type = delta.get("type")
            if delta_type == "text_delta" and delta.get("text"):
                return (Delta(delta["text"]),)
            if delta_type == "input_json_delta" and delta.get("partial_json"):
                if event["index"] in self._response_blocks:
                    return (Delta(delta["partial_json"]),)
                return (ToolCallDelta(self._tools[event["index"]], "", "", delta["partial_json"]),)
        elif kind == "content_block_start":
            event = orjson.loads(data)
            block = event["content_block"]
            if block.get("type") == "tool_use" and block.get("name") == RESPONSE_TOOL:
                self._response_blocks.add(event["index"])
            elif block.get("type") == "tool_use":
                index = self._tools[event["index"]] = len(self._tools)
                return (ToolCallDelta(index, block["id"], block["name"], ""),)
        elif kind == "message_start":
            usage = orjson.loads(data)["message"]["usage"]
            self.input_tokens = usage["input_tokens"]
            self.output_tokens = usage.get("output_tokens") or 0
        elif kind == "message_delta":
            message_delta = orjson.loads(data)
            self.output_tokens = message_delta["usage"]["output_tokens"]
            self.stop_reason = message_delta["delta"].get("stop_reason") or self.stop_reason
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            raise _stream_error(data)
        return ()

    def finish(self) -> Finish:
        if not self.finished:
            raise ProviderError(Failure.ERROR, "the stream ended before the answer was complete")
        totals = (
            TokenUsage(self.input_tokens, self.output_tokens)
            if self.input_tokens is not None
            else None
        )
        reason = _FINISH_REASONS.get(self.stop_reason or "end_turn", "stop")
        if reason == "tool_calls" and not self._tools:
            reason = "stop"  # only the response format's forced tool was called
        return Finish(reason, totals)


def _stream_error(data: bytes) -> ProviderError:
    """An `error` event inside a 200 stream: {"type": "error", "error": {"type", "message"}}."""
    try:
        error = orjson.loads(data).get("error")
        kind = str(error.get("type")) if isinstance(error, dict) else ""
    except (orjson.JSONDecodeError, AttributeError):
        kind = ""
    failure = _STREAM_ERRORS.get(kind, Failure.ERROR)
    named = kind if kind in _STREAM_ERRORS else "an error"
    return ProviderError(failure, f"the provider reported {named}")


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue  # the top-level `system` field
        parts = m.content
        if len(parts) == 1 and isinstance(parts[0], TextPart):  # the common case: plain text
            out.append({"role": m.role, "content": parts[0].text})
            continue
        blocks = [_block(p) for p in parts]
        if m.role == "tool":
            # Tool results travel in a user message; results of one turn share it.
            if out and out[-1].get("tool_results"):
                out[-1]["content"].extend(blocks)
            else:
                out.append({"role": "user", "content": blocks, "tool_results": True})
            continue
        out.append({"role": m.role, "content": blocks})
    for message in out:
        message.pop("tool_results", None)
    return out


def _block(part: TextPart | ImagePart | ToolCallPart | ToolResultPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        if part.url:
            return {"type": "image", "source": {"type": "url", "url": part.url}}
        source = {"type": "base64", "media_type": part.media_type, "data": base64_text(part.data)}
        return {"type": "image", "source": source}
    if isinstance(part, ToolCallPart):
        try:
            arguments = orjson.loads(part.arguments or "{}")
        except orjson.JSONDecodeError:
            raise not_encodable(
                f"the arguments of tool call {part.id[:64]!r} are not JSON", "messages"
            ) from None
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments}
    return {"type": "tool_result", "tool_use_id": part.tool_call_id, "content": part.content}


def _response_schema(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The forced tool's input schema for a response format; None for plain text."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(_ANY_OBJECT)
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, Mapping):
            raise not_encodable(
                "response_format.json_schema.schema must be an object", "response_format"
            )
        if schema.get("type") != "object":
            # Anthropic's tool input is an object: a schema of another type cannot be forced.
            raise not_encodable(
                "for Anthropic models response_format.json_schema.schema must be of type object",
                "response_format",
            )
        return dict(schema)
    raise not_encodable(f"response_format type {str(kind)[:32]!r} is not known", "response_format")


def _tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise not_encodable(f"tool_choice {choice[:32]!r} is not known", "tool_choice")
        return dict(_TOOL_CHOICES[choice])
    name = (choice.get("function") or {}).get("name")
    if not name:
        raise not_encodable("tool_choice must name a function", "tool_choice")
    return {"type": "tool", "name": name}
