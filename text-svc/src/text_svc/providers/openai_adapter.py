"""OpenAI's chat completions API (and any OpenAI-compatible server: .../v1) over the endpoint's
one transport (upstream.transport); stream events are read with upstream.sse."""

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

# "required but ignored" by servers that take no key; some refuse a request without one.
PLACEHOLDER_KEY = "not-needed"

_FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


class OpenAIAdapter:
    def __init__(self, endpoint: Endpoint, connect: Connect) -> None:
        self._compatible = endpoint.api_style != "openai"
        key = endpoint.api_key or PLACEHOLDER_KEY
        self._http = connect({"authorization": f"Bearer {key}"})

    def _params(self, call: ChatCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": call.model,
            "messages": [
                {"role": m.role, "content": m.content, "name": m.name}
                if m.name
                else {"role": m.role, "content": m.content}
                for m in call.messages
            ],
        }
        if call.max_tokens is not None:
            # OpenAI's newer models take only max_completion_tokens; compatible servers max_tokens.
            params["max_tokens" if self._compatible else "max_completion_tokens"] = call.max_tokens
        if call.temperature is not None:
            params["temperature"] = call.temperature
        if call.top_p is not None:
            params["top_p"] = call.top_p
        if call.stop:
            params["stop"] = list(call.stop)
        if call.seed is not None:
            params["seed"] = call.seed
        if call.presence_penalty is not None:
            params["presence_penalty"] = call.presence_penalty
        if call.frequency_penalty is not None:
            params["frequency_penalty"] = call.frequency_penalty
        return params

    async def complete(self, call: ChatCall) -> Completion:
        answer = await self._http.post("/chat/completions", self._params(call))
        try:
            choice = answer["choices"][0]
            usage = answer.get("usage")
            return Completion(
                text=choice["message"].get("content") or "",
                finish_reason=_FINISH_REASONS.get(choice.get("finish_reason") or "stop", "stop"),
                usage=(
                    TokenUsage(usage["prompt_tokens"], usage["completion_tokens"])
                    if usage
                    else None
                ),
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(Failure.ERROR, "the answer was not a chat completion") from None

    async def stream(self, call: ChatCall) -> AsyncGenerator[Delta | Finish, None]:
        # Each chunk's data is parsed with orjson: a pydantic model per chunk (the SDK's way)
        # was most of a short stream's CPU.
        params = self._params(call)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        finish_reason: str | None = None
        usage: TokenUsage | None = None
        async with self._http.stream("POST", "/chat/completions", params) as response:
            try:
                async for event in sse_events(response.content.iter_any()):
                    if event.data.startswith(b"[DONE]"):
                        break
                    chunk = orjson.loads(event.data)
                    if "error" in chunk:
                        raise ProviderError(
                            Failure.ERROR, "the provider reported an error mid-answer"
                        )
                    if chunk.get("usage"):
                        u = chunk["usage"]
                        usage = TokenUsage(u["prompt_tokens"], u["completion_tokens"])
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield Delta(text)
                        if choice.get("finish_reason"):
                            finish_reason = _FINISH_REASONS.get(choice["finish_reason"], "stop")
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ProviderError(Failure.ERROR, "the provider sent a malformed chunk") from None
        if finish_reason is None:
            raise ProviderError(Failure.ERROR, "the stream ended before the answer was complete")
        yield Finish(finish_reason, usage)

    async def list_models(self) -> list[ModelInfo]:
        page = await self._http.get("/models")
        return [
            ModelInfo(m["id"], str(m.get("owned_by") or ""))
            for m in page.get("data", [])
            if isinstance(m, dict) and m.get("id")
        ]

    async def aclose(self) -> None:
        await self._http.aclose()
