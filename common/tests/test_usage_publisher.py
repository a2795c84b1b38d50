"""UsagePublisher against a real Redis: every queued event reaches the stream, and with a linger
the events of requests ending close together go in one pipelined round trip."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from svc_common.usage_events import UsageEvent, UsagePublisher

GAP_S = 0.05  # between two requests' ends


def _event() -> UsageEvent:
    return UsageEvent(
        event_id=f"req-{uuid.uuid4().hex}",
        user_id="alice",
        backend_type="text",
        provider="openai",
        model="gpt-4o-mini",
        mode="member",
        outcome="success",
        input_tokens=10,
        output_tokens=20,
        lease_id="lease_0",
    )


async def _published_ms(
    redis_url: str, stream: str, linger_s: float, events: list[UsageEvent]
) -> dict[str, int]:
    """Submit the events GAP_S apart; returns each event id's stream entry time (ms)."""
    redis = aioredis.Redis.from_url(redis_url)
    publisher = UsagePublisher(redis, stream, linger_s=linger_s)
    try:
        for n, event in enumerate(events):
            if n:
                await asyncio.sleep(GAP_S)  # the requests end apart; not a wait for a result
            publisher.submit(event)
        await publisher.drain(timeout_s=10)
        entries = await redis.xrange(stream)
    finally:
        await redis.aclose()
    return {
        fields[b"event_id"].decode(): int(entry_id.split(b"-")[0]) for entry_id, fields in entries
    }


async def test_with_a_linger_events_ending_close_together_go_in_one_round_trip(
    redis_url: str, redis_prefix: str
) -> None:
    first, second = _event(), _event()
    at = await _published_ms(redis_url, f"{redis_prefix}usage", 0.5, [first, second])
    assert set(at) == {first.event_id, second.event_id}
    # Added by one pipeline: Redis stamps both within the same moment, not GAP_S apart.
    assert abs(at[second.event_id] - at[first.event_id]) < GAP_S * 1000 / 2


async def test_without_a_linger_each_event_is_sent_when_it_is_queued(
    redis_url: str, redis_prefix: str
) -> None:
    first, second = _event(), _event()
    at = await _published_ms(redis_url, f"{redis_prefix}usage", 0.0, [first, second])
    assert set(at) == {first.event_id, second.event_id}
    assert at[second.event_id] - at[first.event_id] >= GAP_S * 1000 / 2
