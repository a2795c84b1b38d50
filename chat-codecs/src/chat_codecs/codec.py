"""What a chat codec is (one per wire protocol), and the loop that turns a provider's response
body into the normalised stream with one."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

import orjson

from chat_codecs.types import ChatRequest, Completion, Finish, ModelInfo, StreamEvent
from upstream import Failure, ProviderError, ServerSentEvent, ndjson_lines, sse_events


class StreamDecoder(Protocol):
    """The state of one streamed answer. `feed` takes one SSE event (SSE protocols) or one
    parsed NDJSON value and returns the normalised events it carries; `finish` the last one,
    or raises ProviderError when the stream ended before the answer was complete."""

    done: bool  # the provider said the stream is over (OpenAI's [DONE]): stop reading

    def feed(self, item: Any) -> Sequence[StreamEvent]: ...

    def finish(self) -> Finish: ...


class ChatCodec(Protocol):
    """One wire protocol: the request it sends and how it reads what comes back. Pure: no I/O,
    so it can be tested against recorded bytes."""

    chat_path: str  # under the endpoint's base URL
    models_path: str
    framing: Literal["sse", "ndjson"]  # how a streamed answer is framed
    malformed: str  # what a user is told when the provider's stream cannot be read

    def headers(self, api_key: str) -> dict[str, str]: ...

    def request_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]: ...

    def completion(self, answer: Any) -> Completion: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def models(self, answer: Any) -> list[ModelInfo]: ...


async def decode_stream(
    codec: ChatCodec, chunks: AsyncIterable[bytes]
) -> AsyncGenerator[StreamEvent, None]:
    """A response body's bytes as normalised events: deltas, then exactly one Finish. Raises
    ProviderError for a provider's error and for anything that cannot be read."""
    decoder = codec.stream_decoder()
    events = events_before_finish(codec, decoder, chunks)
    try:
        async for event in events:
            yield event
    finally:
        await events.aclose()
    yield decoder.finish()


async def events_before_finish(
    codec: ChatCodec, decoder: StreamDecoder, chunks: AsyncIterable[bytes]
) -> AsyncGenerator[StreamEvent, None]:
    """The events `decoder` reads off the body, up to (not including) its Finish."""
    items: AsyncIterable[ServerSentEvent] | AsyncIterable[Any] = (
        sse_events(chunks) if codec.framing == "sse" else ndjson_lines(chunks)
    )
    try:
        async for item in items:
            for event in decoder.feed(item):
                yield event
            if decoder.done:
                break
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise ProviderError(Failure.ERROR, codec.malformed) from None


def unix_time(timestamp: Any) -> int:
    """An RFC 3339 time (Anthropic's created_at, Ollama's modified_at) as unix seconds; 0 if
    there is none or it cannot be read."""
    if not isinstance(timestamp, str) or not timestamp:
        return 0
    text = timestamp.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # fromisoformat takes at most microseconds; Ollama sends nanoseconds
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def not_encodable(detail: str, param: str) -> ProviderError:
    """A request this protocol cannot carry: the caller must change it (a 400, not retried)."""
    return ProviderError(Failure.BAD_REQUEST, detail, param=param)
