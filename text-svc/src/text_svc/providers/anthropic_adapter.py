"""Anthropic's Messages API over the endpoint's one transport (upstream.transport); stream events
are read with upstream.sse."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from text_svc.providers.base import (
    ChatCall,
    Completion,
    Connect,
    Delta,
    Endpoint,
    Failure,
    Finish,
    ModelInfo,
    ProviderError,
    TokenUsage,
)
from upstream import sse_events

ANTHROPIC_VERSION = "2023-06-01"
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}
# Error types Anthropic sends inside a 200 stream, by what they mean for a retry.
_STREAM_ERRORS = {
    "overloaded_error": Failure.UNAVAILABLE,
    "rate_limit_error": Failure.RATE_LIMITED,
    "api_error": Failure.ERROR,
}


class AnthropicAdapter:
    def __init__(self, endpoint: Endpoint, connect: Connect) -> None:
        self._http = connect(
            {"x-api-key": endpoint.api_key, "anthropic-version": ANTHROPIC_VERSION}
        )

    @staticmethod
    def _params(call: ChatCall) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in call.messages if m.role == "system")
        params: dict[str, Any] = {
            "model": call.model,
            "messages": [
                {"role": m.role, "content": m.content} for m in call.messages if m.role != "system"
            ],
            # Required by Anthropic; text_svc.validation always sets it for this provider.
            "max_tokens": call.max_tokens,
        }
        if system:
            params["system"] = system
        if call.temperature is not None:
            params["temperature"] = call.temperature
        if call.top_p is not None:
            params["top_p"] = call.top_p
        if call.stop:
            params["stop_sequences"] = list(call.stop)
        return params

    async def complete(self, call: ChatCall) -> Completion:
        message = await self._http.post("/v1/messages", self._params(call))
        try:
            usage = message["usage"]
            return Completion(
                text="".join(
                    block["text"] for block in message["content"] if block.get("type") == "text"
                ),
                finish_reason=_FINISH_REASONS.get(message.get("stop_reason") or "end_turn", "stop"),
                usage=TokenUsage(usage["input_tokens"], usage["output_tokens"]),
            )
        except (KeyError, TypeError, AttributeError):
            raise ProviderError(Failure.ERROR, "the answer was not a message") from None

    async def stream(self, call: ChatCall) -> AsyncGenerator[Delta | Finish, None]:
        params = self._params(call)
        params["stream"] = True
        input_tokens: int | None = None
        output_tokens = 0  # cumulative in each message_delta: the last one counts
        stop_reason: str | None = None
        finished = False
        async with self._http.stream("POST", "/v1/messages", params) as response:
            try:
                async for event in sse_events(response.content.iter_any()):
                    kind, data = event.event, event.data
                    if kind == "content_block_delta":
                        delta = orjson.loads(data)["delta"]
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield Delta(delta["text"])
                    elif kind == "message_start":
                        usage = orjson.loads(data)["message"]["usage"]
                        input_tokens = usage["input_tokens"]
                        output_tokens = usage.get("output_tokens") or 0
                    elif kind == "message_delta":
                        message_delta = orjson.loads(data)
                        output_tokens = message_delta["usage"]["output_tokens"]
                        stop_reason = message_delta["delta"].get("stop_reason") or stop_reason
                    elif kind == "message_stop":
                        finished = True
                    elif kind == "error":
                        raise _stream_error(data)
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ProviderError(Failure.ERROR, "the provider sent a malformed event") from None
        if not finished:
            raise ProviderError(Failure.ERROR, "the stream ended before the answer was complete")
        totals = TokenUsage(input_tokens, output_tokens) if input_tokens is not None else None
        yield Finish(_FINISH_REASONS.get(stop_reason or "end_turn", "stop"), totals)

    async def list_models(self) -> list[ModelInfo]:
        page = await self._http.get("/v1/models?limit=1000")
        return [
            ModelInfo(m["id"], "anthropic")
            for m in page.get("data", [])
            if isinstance(m, dict) and m.get("id")
        ]

    async def aclose(self) -> None:
        await self._http.aclose()


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
