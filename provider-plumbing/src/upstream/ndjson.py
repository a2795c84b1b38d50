"""Newline-delimited JSON off a byte stream (Ollama's streaming answers): one value per line,
blank lines skipped, lines split across reads reassembled, a last line without a newline kept."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson


async def ndjson_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[Any]:
    """Each line's JSON value; raises orjson.JSONDecodeError for a line that is not JSON."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        for line in lines:
            if line.strip():
                yield orjson.loads(line)
    if buffer.strip():
        yield orjson.loads(buffer)
