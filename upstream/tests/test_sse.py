"""The SSE parser the adapters read provider streams with."""

from __future__ import annotations

from collections.abc import AsyncIterator

from text_svc.providers.sse import sse_events


async def parse(*chunks: bytes) -> list[tuple[str, bytes]]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return [event async for event in sse_events(source())]


async def test_events_split_anywhere_across_reads_are_reassembled() -> None:
    stream = b'event: message_start\ndata: {"a": 1}\n\ndata: {"b": 2}\r\n\r\ndata: [DONE]\n\n'
    whole = await parse(stream)
    assert whole == [("message_start", b'{"a": 1}'), ("", b'{"b": 2}'), ("", b"[DONE]")]
    assert await parse(*(stream[i : i + 1] for i in range(len(stream)))) == whole


async def test_data_lines_join_and_events_without_data_or_end_are_dropped() -> None:
    events = await parse(b"event: ping\n\n: comment\ndata: one\ndata:two\n\nevent: x\ndata: cut")
    assert events == [("", b"one\ntwo")]
