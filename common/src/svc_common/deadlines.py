"""A call's deadline on the event loop's clock, and how much of it a step may take: the one
arithmetic every model service's servicer does before calling settings-svc, billing-svc or a
provider."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpc

__all__ = ["call_deadline", "time_left"]

# The shortest timeout a step is given: a deadline already passed still makes the next call fail
# at once with DEADLINE_EXCEEDED instead of passing 0 (no timeout) or a negative number.
_MIN_TIMEOUT_S = 0.001


def call_deadline(context: grpc.aio.ServicerContext[Any, Any], margin_s: float) -> float:
    """The caller's deadline on the running loop's clock, `margin_s` early (so the service
    reports its own timeout before the caller's fires); infinite when the caller set none."""
    remaining = context.time_remaining()
    if remaining is None:
        return math.inf
    return asyncio.get_running_loop().time() + remaining - margin_s


def time_left(deadline: float, cap_s: float) -> float:
    """The timeout of one step: what is left of `deadline`, at most `cap_s`."""
    remaining = deadline - asyncio.get_running_loop().time()
    return max(_MIN_TIMEOUT_S, min(cap_s, remaining))
