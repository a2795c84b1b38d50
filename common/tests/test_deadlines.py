"""A call's deadline and each step's share of it, as every model service's servicer computes
them (`svc_common.deadlines`)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from svc_common.deadlines import call_deadline, time_left


class _Context:
    """Only what `call_deadline` reads of a grpc.aio.ServicerContext."""

    def __init__(self, remaining: float | None) -> None:
        self._remaining = remaining

    def time_remaining(self) -> float | None:
        return self._remaining


async def test_a_deadline_is_the_callers_less_the_margin_or_none() -> None:
    now = asyncio.get_running_loop().time()
    context: Any = _Context(2.0)
    assert 2.0 - 0.05 <= call_deadline(context, 0.05) - now < 2.0
    assert call_deadline(_Context(None), 0.05) == math.inf  # type: ignore[arg-type]


async def test_a_step_gets_what_is_left_at_most_its_cap_and_never_zero() -> None:
    now = asyncio.get_running_loop().time()
    assert time_left(math.inf, 5.0) == 5.0
    assert 0.5 < time_left(now + 1.0, 5.0) <= 1.0
    assert time_left(now - 1.0, 5.0) == 0.001  # passed: the next call fails at once
