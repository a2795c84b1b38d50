"""Waiting for a condition that another process or task makes true, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, within_s: float = 15.0, what: str = ""
) -> T:
    """Poll `probe` until it returns a truthy value; fail with `what` after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what or probe}")
        await asyncio.sleep(0.02)
