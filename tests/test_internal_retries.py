"""A provider outage is tried exactly as often as text-svc's own attempt policy says: the channel
between gateway and text-svc does not multiply it (text-svc answers UNAVAILABLE after it has
called the provider, so a channel retry would call the provider again, unbilled)."""

from __future__ import annotations

import openai
import pytest
from harness import Platform

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_outage_is_attempted_only_by_text_svcs_policy(
    platform: Platform, stream: bool
) -> None:
    await platform.grant("alice", 1_000_000)
    platform.openai.set_behaviour(error_status=503, retry_after_s=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await platform.client("alice").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream
        )
    assert caught.value.status_code == 503
    attempts = 1 + platform.text_settings.max_retries
    assert platform.openai.stats["requests"] == attempts
