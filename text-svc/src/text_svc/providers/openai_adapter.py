"""OpenAI and OpenAI-compatible servers (LM Studio, vLLM, Ollama's /v1), via the official SDK."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
import httpx2  # the SDK's HTTP layer: transport errors surface as its exceptions
import openai
import orjson

from text_svc.providers.base import (
    ChatCall,
    Completion,
    Delta,
    Endpoint,
    Failure,
    Finish,
    ModelInfo,
    ProviderError,
    TokenUsage,
    refused,
    status_error,
)
from text_svc.providers.http import JsonClient
from text_svc.providers.sse import sse_events

# "required but ignored" by servers that take no key; the SDK refuses to start without one.
PLACEHOLDER_KEY = "not-needed"

_FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


class OpenAIAdapter:
    """Streams through the SDK (events parsed in .sse); whole answers and model lists as plain
    JSON (see .http)."""

    def __init__(
        self, endpoint: Endpoint, timeout: openai.Timeout, http_timeout: aiohttp.ClientTimeout
    ) -> None:
        self._compatible = endpoint.api_style != "openai"
        key = endpoint.api_key or PLACEHOLDER_KEY
        self._http = JsonClient(endpoint.base_url, {"authorization": f"Bearer {key}"}, http_timeout)
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=endpoint.base_url,
            max_retries=0,  # retries are text_svc.generation's, before the first byte only
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )

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
        # The SDK sends the request and raises its typed errors for an error status; the events
        # are parsed here (see .sse) instead of as one pydantic model per chunk.
        finish_reason: str | None = None
        usage: TokenUsage | None = None
        async with contextlib.AsyncExitStack() as closing:  # on early exit too: closes upstream
            try:
                response = await closing.enter_async_context(
                    self._client.chat.completions.with_streaming_response.create(
                        **self._params(call), stream=True, stream_options={"include_usage": True}
                    )
                )
            except (openai.APIError, httpx2.HTTPError) as err:
                raise _provider_error(err) from None
            try:
                async for _, data in sse_events(response.iter_bytes()):
                    if data.startswith(b"[DONE]"):
                        break
                    chunk = orjson.loads(data)
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
            except (openai.APIError, httpx2.HTTPError) as err:
                raise _provider_error(err, mid_stream=True) from None
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
        await self._client.close()
        await self._http.aclose()


def _provider_error(err: Exception, *, mid_stream: bool = False) -> ProviderError:
    if isinstance(err, openai.APITimeoutError | httpx2.TimeoutException) and not refused(err):
        return ProviderError(Failure.TIMEOUT, "no answer in time")
    if isinstance(err, openai.APIConnectionError | httpx2.HTTPError):
        if mid_stream:
            return ProviderError(Failure.ERROR, "the connection broke mid-answer")
        return ProviderError(Failure.UNAVAILABLE, "could not reach the server")
    if isinstance(err, openai.APIStatusError):
        return status_error(err.status_code, err.response.headers, _message(err.body))
    # An error payload inside a stream: no status, and nothing in it we need to show.
    return ProviderError(Failure.ERROR, "the provider reported an error mid-answer")


def _message(body: object) -> str:
    if isinstance(body, Mapping):
        message = body.get("message")
        return message if isinstance(message, str) else ""
    return body if isinstance(body, str) else ""
