"""The SSE and NDJSON readers the adapters read provider streams with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from upstream.ndjson import ndjson_lines
from upstream.sse import ServerSentEvent, sse_events


async def source(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def events(*chunks: bytes) -> list[ServerSentEvent]:
    return [event async for event in sse_events(source(*chunks))]


async def parse(*chunks: bytes) -> list[tuple[str, bytes]]:
    return [(e.event, e.data) for e in await events(*chunks)]


def byte_by_byte(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


async def test_events_split_anywhere_across_reads_are_reassembled() -> None:
    stream = b'event: message_start\ndata: {"a": 1}\n\ndata: {"b": 2}\r\n\r\ndata: [DONE]\n\n'
    whole = await parse(stream)
    assert whole == [("message_start", b'{"a": 1}'), ("", b'{"b": 2}'), ("", b"[DONE]")]
    assert await parse(*(stream[i : i + 1] for i in range(len(stream)))) == whole


async def test_data_lines_join_and_events_without_data_or_end_are_dropped() -> None:
    events = await parse(b"event: ping\n\n: comment\ndata: one\ndata:two\n\nevent: x\ndata: cut")
    assert events == [("", b"one\ntwo")]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
async def test_every_line_end_the_standard_allows_is_read(end: bytes) -> None:
    stream = end.join([b"event: a", b"data: 1", b"data: 2", b"", b"data: 3", b"", b""])
    expected = [("a", b"1\n2"), ("", b"3")]
    assert await parse(stream) == expected
    # A CR at the end of one read and the LF at the start of the next are one line end.
    assert await parse(*byte_by_byte(stream)) == expected


async def test_id_retry_comments_and_unknown_fields() -> None:
    stream = (
        b": keep-alive\n"
        b"id: 7\nretry: 1500\ndata: first\n\n"
        b"retry: soon\nfoo: bar\ndata\n\n"  # `data` without a colon is an empty data line
        b"id: 8\x009\ndata: third\n\n"  # an id with NUL is ignored
        b"id\ndata:  two spaces\n\n"  # an empty id resets it; only one space is stripped
    )
    assert await events(stream) == [
        ServerSentEvent("", b"first", "7", 1500),
        ServerSentEvent("", b"", "7", 1500),
        ServerSentEvent("", b"third", "7", 1500),
        ServerSentEvent("", b" two spaces", "", 1500),
    ]
    assert await events(*byte_by_byte(stream)) == await events(stream)


async def test_ndjson_lines_split_across_reads_and_a_last_line_without_newline() -> None:
    stream = b'{"a": 1}\n\n  \n{"b": [2, 3]}\r\n{"done": true}'
    expected = [{"a": 1}, {"b": [2, 3]}, {"done": True}]
    assert [v async for v in ndjson_lines(source(stream))] == expected
    assert [v async for v in ndjson_lines(source(*byte_by_byte(stream)))] == expected


async def test_a_line_that_is_not_json_is_an_error() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        [v async for v in ndjson_lines(source(b'{"a": 1}\nnot json\n'))]
