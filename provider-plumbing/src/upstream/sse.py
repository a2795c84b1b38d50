"""Server-sent events off a byte stream, as the WHATWG HTML standard's event-stream parser reads
them: CRLF, CR or LF line ends (also split across reads), `data` lines joined by LF, `event`,
`id` (kept across events; ignored when it contains NUL), `retry` (digits only), comments and
unknown fields ignored, an event with no data not dispatched, an unfinished event at the end of
the stream dropped. Data stays bytes: callers parse JSON with orjson, not a model per event.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str  # "" when the event names none (the standard's "message")
    data: bytes
    id: str = ""  # the last event id seen so far in the stream
    retry_ms: int | None = None  # the last reconnection time the stream set, if any


async def sse_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    buffer = b""
    pending_cr = False  # the previous read ended in CR: an LF starting this one belongs to it
    event = ""
    data: list[bytes] = []
    last_id = ""
    retry_ms: int | None = None
    async for chunk in chunks:
        if not chunk:
            continue
        if pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        pending_cr = chunk.endswith(b"\r")
        buffer += chunk
        lines = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        buffer = lines.pop()
        for line in lines:
            if not line:
                if data:
                    yield ServerSentEvent(event, b"\n".join(data), last_id, retry_ms)
                data = []
                event = ""
                continue
            if line.startswith(b":"):
                continue  # a comment (keep-alive)
            name, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
            elif name == b"id":
                if b"\x00" not in value:
                    last_id = value.decode("utf-8", "replace")
            elif name == b"retry":
                if value.isdigit():
                    retry_ms = int(value)
