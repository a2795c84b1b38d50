"""Ollama's native chat API (`POST /api/chat`, NDJSON) over the endpoint's one transport
(upstream.transport); stream lines are read with upstream.ndjson."""

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
from upstream import ndjson_lines

_FINISH_REASONS = {"stop": "stop", "length": "length"}


class OllamaAdapter:
    def __init__(self, endpoint: Endpoint, connect: Connect) -> None:
        # Ollama takes no key; one is sent when given (an operator's authenticating proxy).
        headers = {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._http = connect(headers)

    @staticmethod
    def _body(call: ChatCall, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if call.max_tokens is not None:
            options["num_predict"] = call.max_tokens
        if call.temperature is not None:
            options["temperature"] = call.temperature
        if call.top_p is not None:
            options["top_p"] = call.top_p
        if call.stop:
            options["stop"] = list(call.stop)
        if call.seed is not None:
            options["seed"] = call.seed
        if call.presence_penalty is not None:
            options["presence_penalty"] = call.presence_penalty
        if call.frequency_penalty is not None:
            options["frequency_penalty"] = call.frequency_penalty
        body: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "stream": stream,
        }
        if options:
            body["options"] = options
        return body

    async def complete(self, call: ChatCall) -> Completion:
        answer = await self._http.post("/api/chat", self._body(call, False))
        if not isinstance(answer, dict) or "error" in answer:
            raise ProviderError(Failure.ERROR, "the provider reported an error")
        return Completion(
            text=(answer.get("message") or {}).get("content", ""),
            finish_reason=_FINISH_REASONS.get(answer.get("done_reason", "stop"), "stop"),
            usage=_usage(answer),
        )

    async def stream(self, call: ChatCall) -> AsyncGenerator[Delta | Finish, None]:
        finish: Finish | None = None
        async with self._http.stream("POST", "/api/chat", self._body(call, True)) as response:
            try:
                async for part in ndjson_lines(response.content.iter_any()):
                    if not isinstance(part, dict) or "error" in part:
                        raise ProviderError(Failure.ERROR, "the provider reported an error")
                    if text := (part.get("message") or {}).get("content"):
                        yield Delta(text)
                    if part.get("done"):
                        reason = _FINISH_REASONS.get(part.get("done_reason", "stop"), "stop")
                        finish = Finish(reason, _usage(part))
            except (orjson.JSONDecodeError, TypeError, AttributeError):
                raise ProviderError(Failure.ERROR, "the provider sent a malformed line") from None
        if finish is None:
            raise ProviderError(Failure.ERROR, "the stream ended before the answer was complete")
        yield finish

    async def list_models(self) -> list[ModelInfo]:
        tags = await self._http.get("/api/tags")
        return [
            ModelInfo(m["name"], "ollama")
            for m in tags.get("models", [])
            if isinstance(m, dict) and m.get("name")
        ]

    async def aclose(self) -> None:
        await self._http.aclose()


def _usage(part: dict[str, Any]) -> TokenUsage | None:
    if "prompt_eval_count" not in part and "eval_count" not in part:
        return None
    return TokenUsage(int(part.get("prompt_eval_count", 0)), int(part.get("eval_count", 0)))
