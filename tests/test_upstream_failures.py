"""What a user sees when the provider fails: the right status, the provider's retry hint, no key."""

from __future__ import annotations

import time

import openai
import pytest
from harness import PLATFORM_OPENAI_KEY, Platform, running_platform

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_rate_limited_upstream_gives_429_with_retry_after(platform: Platform) -> None:
    await platform.grant("alice", 1_000_000)
    platform.openai.set_behaviour(error_status=429, retry_after_s=120)
    with pytest.raises(openai.RateLimitError) as caught:
        await platform.client("alice").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert caught.value.response.headers["retry-after"] == "120"


async def test_a_short_rate_limit_is_retried_before_the_first_byte(platform: Platform) -> None:
    await platform.grant("alice", 1_000_000)
    platform.openai.set_behaviour(error_status=429, retry_after_s=0, fail_times=1)
    reply = await platform.client("alice").chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert reply.choices[0].message.content.startswith("Echo: hi")
    assert platform.openai.stats["requests"] == 2


@pytest.mark.parametrize(("upstream", "status"), [(500, 502), (503, 503), (529, 503)])
async def test_provider_failures_map_to_gateway_statuses(
    platform: Platform, upstream: int, status: int
) -> None:
    await platform.grant("alice", 1_000_000)
    platform.openai.set_behaviour(error_status=upstream, retry_after_s=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await platform.client("alice").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert caught.value.status_code == status
    # The hold is settled to nothing: a failed call costs the user nothing.


async def test_provider_rejecting_the_platform_key_does_not_echo_it(platform: Platform) -> None:
    await platform.grant("alice", 1_000_000)
    platform.openai.state.set_keys({"sk-some-other-key-entirely-000000"})
    with pytest.raises(openai.APIStatusError) as caught:
        await platform.client("alice").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    text = f"{caught.value.message} {caught.value.body} {caught.value.response.text}"
    assert PLATFORM_OPENAI_KEY not in text
    assert PLATFORM_OPENAI_KEY[-8:] not in text
    assert caught.value.status_code in (401, 502, 503)


async def test_a_hanging_provider_gives_504_within_the_timeout(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with running_platform(
        database_url, redis_url, redis_prefix, text={"upstream_timeout_s": 1.0, "max_retries": 0}
    ) as platform:
        await platform.grant("alice", 1_000_000)
        platform.openai.set_behaviour(hang=True)
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            await platform.client("alice", timeout=30).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        assert caught.value.status_code == 504
        assert time.monotonic() - started < 10


async def test_fallback_model_answers_when_the_provider_is_down(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    async with running_platform(
        database_url,
        redis_url,
        redis_prefix,
        text={"fallback": "anthropic:claude-3-5-haiku-latest", "max_retries": 0},
    ) as platform:
        await platform.grant("alice", 1_000_000)
        platform.openai.set_behaviour(error_status=503, retry_after_s=0)
        reply = await platform.client("alice").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert reply.model.startswith("claude-3-5-haiku")
        assert platform.anthropic.stats["requests"] == 1
