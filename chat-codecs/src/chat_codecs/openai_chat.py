"""OpenAI chat completions (`POST {base}/chat/completions`, data-only SSE ending `[DONE]`), also
spoken by OpenAI-compatible servers (LM Studio, vLLM, Ollama's /v1). Tools, tool choice and the
response format pass through in OpenAI's own shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson

from chat_codecs.codec import base64_text
from chat_codecs.types import (
    ChatRequest,
    Completion,
    Delta,
    Finish,
    ImagePart,
    Logprobs,
    Message,
    ModelInfo,
    StreamEvent,
    TextPart,
    TokenUsage,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
)
from upstream import Failure, ProviderError, ServerSentEvent

# "required but ignored" by servers that take no key; some refuse a request without one.
PLACEHOLDER_KEY = "not-needed"

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


class OpenAIChat:
    chat_path = "/chat/completions"
    models_path = "/models"
    framing: Literal["sse", "ndjson"] = "sse"
    malformed = "the provider sent a malformed chunk"

    def __init__(self, *, compatible: bool = False) -> None:
        # OpenAI's newer models take only max_completion_tokens; compatible servers max_tokens.
        self._max_tokens_field = "max_tokens" if compatible else "max_completion_tokens"

    def headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key or PLACEHOLDER_KEY}"}

    def request_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
        }
        if request.max_tokens is not None:
            body[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.presence_penalty is not None:
            body["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            body["frequency_penalty"] = request.frequency_penalty
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.parallel_tool_calls is not None and request.tools:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            body["response_format"] = dict(request.response_format)
        if request.logprobs:
            body["logprobs"] = True
            if request.top_logprobs is not None:
                body["top_logprobs"] = request.top_logprobs
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def completion(self, answer: Any) -> Completion:
        try:
            choice = answer["choices"][0]
            message = choice["message"]
            usage = answer.get("usage")
            return Completion(
                text=message.get("content") or "",
                finish_reason=_FINISH_REASONS.get(choice.get("finish_reason") or "stop", "stop"),
                usage=(
                    TokenUsage(usage["prompt_tokens"], usage["completion_tokens"])
                    if usage
                    else None
                ),
                tool_calls=tuple(
                    ToolCallPart(c["id"], c["function"]["name"], c["function"]["arguments"])
                    for c in message.get("tool_calls") or ()
                ),
                logprobs=_logprobs(choice),
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(Failure.ERROR, "the answer was not a chat completion") from None

    def stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder()

    def models(self, answer: Any) -> list[ModelInfo]:
        return [
            ModelInfo(
                m["id"],
                str(m.get("owned_by") or ""),
                m["created"] if isinstance(m.get("created"), int) else 0,
            )
            for m in answer.get("data", [])
            if isinstance(m, dict) and m.get("id")
        ]


class OpenAIStreamDecoder:
    # Each chunk's data is parsed with orjson: a pydantic model per chunk (the SDK's way) was
    # most of a short stream's CPU.
    __slots__ = ("done", "finish_reason", "usage")

    def __init__(self) -> None:
        self.done = False
        self.finish_reason: str | None = None
        self.usage: TokenUsage | None = None

    def feed(self, item: ServerSentEvent) -> Sequence[StreamEvent]:
        if item.data.startswith(b"[DONE]"):
            self.done = True
            return ()
        chunk = orjson.loads(item.data)
        if "error" in chunk:
            raise ProviderError(Failure.ERROR, "the provider reported an error mid-answer")
        if chunk.get("usage"):
            u = chunk["usage"]
            self.usage = TokenUsage(u["prompt_tokens"], u["completion_tokens"])
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            logprobs = _logprobs(choice)
            if text or logprobs:
                events.append(Delta(text or "", logprobs))
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                events.append(
                    ToolCallDelta(
                        call["index"],
                        call.get("id") or "",
                        function.get("name") or "",
                        function.get("arguments") or "",
                    )
                )
            if choice.get("finish_reason"):
                self.finish_reason = _FINISH_REASONS.get(choice["finish_reason"], "stop")
        return events

    def finish(self) -> Finish:
        if self.finish_reason is None:
            raise ProviderError(Failure.ERROR, "the stream ended before the answer was complete")
        return Finish(self.finish_reason, self.usage)


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "parameters": dict(tool.parameters),
    }
    if tool.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _logprobs(choice: Any) -> Logprobs:
    logprobs = choice.get("logprobs")
    if not logprobs:
        return ()
    return tuple(logprobs.get("content") or ())


def _message(m: Message) -> dict[str, Any]:
    parts = m.content
    if len(parts) == 1 and isinstance(parts[0], TextPart):  # the common case: plain text
        if m.name:
            return {"role": m.role, "content": parts[0].text, "name": m.name}
        return {"role": m.role, "content": parts[0].text}
    out: dict[str, Any] = {"role": m.role}
    results = [p for p in parts if isinstance(p, ToolResultPart)]
    if results:  # a `tool` message answers one call
        out["tool_call_id"] = results[0].tool_call_id
        out["content"] = results[0].content
        return out
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    if any(isinstance(p, ImagePart) for p in parts):
        out["content"] = [_content_part(p) for p in parts if isinstance(p, TextPart | ImagePart)]
    else:
        text = m.text
        out["content"] = text if text or not calls else None
    if calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    if m.name:
        out["name"] = m.name
    return out


def _content_part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    url = part.url or f"data:{part.media_type};base64,{base64_text(part.data)}"
    image: dict[str, Any] = {"url": url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}
