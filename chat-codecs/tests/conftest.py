"""Feeding recorded wire bytes to a codec, split at awkward places as a network would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from chat_codecs import ChatCodec, StreamEvent, decode_stream

Decode = Callable[..., Awaitable[list[StreamEvent]]]


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def _decode(codec: ChatCodec, body: bytes, size: int = 7) -> list[StreamEvent]:
    return [event async for event in decode_stream(codec, _chunks(body, size))]


@pytest.fixture
def decode() -> Decode:
    """Every normalised event a body gives, read in `size`-byte pieces."""
    return _decode
