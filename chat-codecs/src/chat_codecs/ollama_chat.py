"""Ollama's native chat API (`POST {base}/api/chat`, NDJSON lines). Images go as raw base64 in the
message's `images` (no data: prefix, no URLs: a service fetches URLs first); tools in OpenAI's
shape, tool-call arguments as JSON objects; a response format as `format` (a JSON schema or
"json"). Ollama cannot be made to call a tool, nor held to one call, nor asked for logprobs: such
requests are refused (a 400 that says so) rather than answered as if they were honoured."""

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
from upstream import Failure, ProviderError

_FINISH_REASONS = {"stop": "stop", "length": "length"}


class OllamaChat:
    chat_path = "/api/chat"
    models_path = "/api/tags"
    framing: Literal["sse", "ndjson"] = "ndjson"
    malformed = "the provider sent a malformed line"

    def headers(self, api_key: str) -> dict[str, str]:
        # Ollama takes no key; one is sent when given (an operator's authenticating proxy).
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def request_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = list(request.stop)
        if request.seed is not None:
            options["seed"] = request.seed
        if request.presence_penalty is not None:
            options["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            options["frequency_penalty"] = request.frequency_penalty
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "stream": stream,
        }
        if options:
            body["options"] = options
        if request.logprobs:
            raise not_encodable("Ollama's native API does not return logprobs", "logprobs")
        choice = request.tool_choice
        if request.tools and choice is not None and choice not in ("auto", "none"):
            raise not_encodable(
                "Ollama cannot be made to call a tool: use tool_choice 'auto' or 'none'",
                "tool_choice",
            )
        if request.tools and request.parallel_tool_calls is False:
            raise not_encodable(
                "Ollama cannot be held to one tool call: leave parallel_tool_calls unset",
                "parallel_tool_calls",
            )
        if request.tools and choice != "none":  # "none": the tools are simply not offered
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in request.tools
            ]
        if request.response_format is not None:
            fmt = _format(request.response_format)
            if fmt is not None:
                body["format"] = fmt
        return body

    def completion(self, answer: Any) -> Completion:
        if not isinstance(answer, dict) or "error" in answer:
            raise ProviderError(Failure.ERROR, "the provider reported an error")
        message = answer.get("message") or {}
        calls = tuple(
            ToolCallPart(f"call_{i}", name, arguments)
            for i, (name, arguments) in enumerate(_tool_calls(message))
        )
        reason = _FINISH_REASONS.get(answer.get("done_reason", "stop"), "stop")
        return Completion(
            text=message.get("content", ""),
            finish_reason="tool_calls" if calls and reason == "stop" else reason,
            usage=_usage(answer),
            tool_calls=calls,
        )

    def stream_decoder(self) -> OllamaStreamDecoder:
        return OllamaStreamDecoder()

    def models(self, answer: Any) -> list[ModelInfo]:
        return [
            ModelInfo(m["name"], "ollama", unix_time(m.get("modified_at")))
            for m in answer.get("models", [])
            if isinstance(m, dict) and m.get("name")
        ]


class OllamaStreamDecoder:
    __slots__ = ("_calls", "_finish", "done")

    def __init__(self) -> None:
        self.done = False  # the body simply ends after the `done` line
        self._finish: Finish | None = None
        self._calls = 0

    def feed(self, item: Any) -> Sequence[StreamEvent]:
        if not isinstance(item, dict) or "error" in item:
            raise ProviderError(Failure.ERROR, "the provider reported an error")
        events: list[StreamEvent] = []
        message = item.get("message") or {}
        if text := message.get("content"):
            events.append(Delta(text))
        for name, arguments in _tool_calls(message):
            # Ollama streams each call whole and gives it no id: the index names it.
            events.append(ToolCallDelta(self._calls, f"call_{self._calls}", name, arguments))
            self._calls += 1
        if item.get("done"):
            reason = _FINISH_REASONS.get(item.get("done_reason", "stop"), "stop")
            if self._calls and reason == "stop":
                reason = "tool_calls"
            self._finish = Finish(reason, _usage(item))
        return events

    def finish(self) -> Finish:
        if self._finish is None:
            raise ProviderError(Failure.ERROR, "the stream ended before the answer was complete")
        return self._finish


def _message(m: Message) -> dict[str, Any]:
    parts = m.content
    if len(parts) == 1 and isinstance(parts[0], TextPart):  # the common case: plain text
        return {"role": m.role, "content": parts[0].text}
    out: dict[str, Any] = {"role": m.role, "content": m.text}
    images = []
    calls = []
    for part in parts:
        if isinstance(part, ImagePart):
            if not part.data:
                raise not_encodable(
                    "Ollama takes images as data, not URLs: send the image itself", "messages"
                )
            images.append(base64_text(part.data))
        elif isinstance(part, ToolCallPart):
            try:
                arguments = orjson.loads(part.arguments or "{}")
            except orjson.JSONDecodeError:
                raise not_encodable(
                    f"the arguments of tool call {part.id[:64]!r} are not JSON", "messages"
                ) from None
            calls.append({"function": {"name": part.name, "arguments": arguments}})
        elif isinstance(part, ToolResultPart):
            out["content"] = part.content
    if images:
        out["images"] = images
    if calls:
        out["tool_calls"] = calls
    return out


def _tool_calls(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    calls = []
    for call in message.get("tool_calls") or ():
        function = call["function"]
        arguments = function.get("arguments") or {}
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
        calls.append((str(function["name"]), text))
    return calls


def _format(response_format: Mapping[str, Any]) -> Any:
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or "json"
    return None


def _usage(part: Mapping[str, Any]) -> TokenUsage | None:
    if "prompt_eval_count" not in part and "eval_count" not in part:
        return None
    return TokenUsage(int(part.get("prompt_eval_count", 0)), int(part.get("eval_count", 0)))
