"""OpenAI `POST /v1/images/generations`: GPT-image models (stream + partial_images, token usage)
and the DALL-E shapes OpenAI-compatible image servers still speak (always asked for b64_json)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

import orjson

from image_svc.providers.base import (
    Billed,
    Event,
    Final,
    Job,
    Partial,
    Progress,
    TokenUsage,
)
from upstream import Connect, Endpoint, Failure, ProviderError, sse_events


def is_gpt_image(model: str) -> bool:
    return model.startswith(("gpt-image", "chatgpt-image"))


def token_usage(raw: Any) -> TokenUsage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("input_tokens_details") or {}
    return TokenUsage(
        int(raw.get("input_tokens") or 0),
        int(raw.get("output_tokens") or 0),
        int(details.get("text_tokens") or 0),
        int(details.get("image_tokens") or 0),
    )


def _decode(b64: Any) -> bytes:
    if not isinstance(b64, str):
        raise ProviderError(Failure.ERROR, "the provider sent an image without b64_json")
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(
            Failure.ERROR, "the provider sent an image that is not base64"
        ) from None


class OpenAIImages:
    def __init__(self, endpoint: Endpoint, connect: Connect) -> None:
        headers = {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._http = connect(headers)

    def _body(self, job: Job) -> dict[str, Any]:
        body: dict[str, Any] = {"model": job.model, "prompt": job.prompt, "n": job.n}
        if job.size:
            body["size"] = job.size
        if job.quality:
            body["quality"] = job.quality
        if is_gpt_image(job.model):
            if job.background:
                body["background"] = job.background
            body["output_format"] = job.output_format
            if job.stream:
                body["stream"] = True
                body["partial_images"] = job.partial_images
        else:
            body["response_format"] = "b64_json"
            if job.style:
                body["style"] = job.style
        return body

    async def run(self, job: Job) -> AsyncIterator[Event]:
        if job.stream and is_gpt_image(job.model):
            async for event in self._stream(job):
                yield event
            return
        answer = await self._http.post("/images/generations", self._body(job))
        items = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not items:
            raise ProviderError(Failure.ERROR, "the provider answered without images")
        yield Progress(1, 1)
        for index, item in enumerate(items):
            yield Final(
                _decode(item.get("b64_json")),
                index,
                revised_prompt=str(item.get("revised_prompt") or ""),
            )
        usage = token_usage(answer.get("usage"))
        if usage is not None:
            yield Billed(usage)

    async def _stream(self, job: Job) -> AsyncIterator[Event]:
        # The platform's progress for a provider that reports none: one step per partial image
        # and one for the image itself.
        total = job.partial_images + 1
        completed = 0
        async with self._http.stream("POST", "/images/generations", self._body(job)) as response:
            yield Progress(0, total, image_index=0)
            async for sse in sse_events(response.content.iter_any()):
                if sse.data == b"[DONE]":
                    break
                try:
                    payload = orjson.loads(sse.data)
                except orjson.JSONDecodeError:
                    raise ProviderError(
                        Failure.ERROR, "the provider sent an event that is not JSON"
                    ) from None
                kind = payload.get("type") or sse.event
                if kind.endswith(".partial_image"):
                    index = int(payload.get("partial_image_index") or 0)
                    yield Progress(index + 1, total, image_index=completed)
                    yield Partial(_decode(payload.get("b64_json")), index)
                elif kind.endswith(".completed"):
                    yield Progress(total, total, image_index=completed)
                    yield Final(
                        _decode(payload.get("b64_json")),
                        completed,
                        usage=token_usage(payload.get("usage")),
                    )
                    completed += 1
                    if completed < job.n:
                        yield Progress(0, total, image_index=completed)
                elif kind == "error" or "error" in payload:
                    error = (
                        payload.get("error") if isinstance(payload.get("error"), dict) else payload
                    )
                    message = str(error.get("message") or "the image generation failed")[:300]
                    raise ProviderError(Failure.ERROR, message)

    async def models(self) -> list[str]:
        answer = await self._http.get("/models")
        data = answer.get("data") if isinstance(answer, dict) else None
        return [str(m["id"]) for m in data or [] if isinstance(m, dict) and "id" in m]

    async def aclose(self) -> None:
        await self._http.aclose()
