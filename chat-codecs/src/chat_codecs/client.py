"""A chat client: one codec on its endpoint's one transport (upstream.ProviderTransport)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from chat_codecs.codec import ChatCodec, events_before_finish
from chat_codecs.types import ChatRequest, Completion, ModelInfo, StreamEvent
from upstream import Connect


class ChatClient:
    """Bound to one endpoint (base URL and key) and reused across requests."""

    def __init__(self, codec: ChatCodec, api_key: str, connect: Connect) -> None:
        self.codec = codec
        self._http = connect(codec.headers(api_key))

    async def complete(self, request: ChatRequest) -> Completion:
        """The whole answer in one upstream call; raises ProviderError."""
        codec = self.codec
        answer = await self._http.post(codec.chat_path, codec.request_body(request, stream=False))
        return codec.completion(answer)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Deltas, then exactly one Finish; raises ProviderError. Closing the generator early
        (aclose, or cancellation) closes the upstream HTTP stream."""
        codec = self.codec
        body = codec.request_body(request, stream=True)
        decoder = codec.stream_decoder()
        async with self._http.stream("POST", codec.chat_path, body) as response:
            events = events_before_finish(codec, decoder, response.content.iter_any())
            try:
                async for event in events:
                    yield event
            finally:
                await events.aclose()
        # The Finish (or the error of an incomplete answer) comes once the body is read and the
        # connection is back in the pool: the caller may close this generator at the Finish.
        yield decoder.finish()

    async def list_models(self) -> list[ModelInfo]:
        """The provider's live model list for this key (also the cheap connection check)."""
        return self.codec.models(await self._http.get(self.codec.models_path))

    async def aclose(self) -> None:
        await self._http.aclose()
