"""image-svc's money: a hold for the worst case before a member call (n images at the size and
quality asked; GPT-image also in tokens: the prompt's bound plus the output-token table), and one
usage event after every call under backend type `image`, settled from what was produced
(GPT-image: the provider's token usage of the images that completed; a stream that ended without
`completed` is not charged)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from image_svc.environment import Settings
from image_svc.plan import Plan
from image_svc.providers.base import TokenUsage
from svc_common import metering
from svc_common.auth import Caller
from svc_common.holds import Hold, Route, charged_to
from svc_common.usage_events import UsageEvent, now_ms

if TYPE_CHECKING:
    import redis.asyncio as aioredis

BACKEND_TYPE = "image"


class UsageRecord:
    __slots__ = ("_plan", "_user_id", "hold", "images", "published", "started_at_ms", "tokens")

    def __init__(self, who: Caller, plan: Plan, hold: Hold | None) -> None:
        self._plan = plan
        self._user_id = who.user_id
        self.hold = hold
        self.images = 0
        self.tokens: TokenUsage | None = None
        self.published = False
        self.started_at_ms = now_ms()

    def add_tokens(self, usage: TokenUsage) -> None:
        self.tokens = usage if self.tokens is None else self.tokens + usage

    def event(self, outcome: str) -> UsageEvent:
        plan = self._plan
        images = self.images
        tokens = self.tokens or TokenUsage()
        if plan.token_billed and self.tokens is None:
            images = 0  # GPT-image without usage: nothing completed, nothing is charged
        if images == 0:
            tokens = TokenUsage()
            if outcome == "success":
                outcome = "error"
        return UsageEvent(
            event_id=plan.request_id,
            user_id=self._user_id,
            backend_type=BACKEND_TYPE,
            provider=plan.provider,
            model=plan.job.model,
            mode=plan.mode,
            outcome=outcome,
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            images=images,
            image_size=plan.usage_size,
            image_quality=plan.usage_quality,
            **charged_to(self.hold),
            started_at_ms=self.started_at_ms,
            ended_at_ms=now_ms(),
        )


class Metering(metering.Metering):
    def __init__(self, settings: Settings, redis: aioredis.Redis | None) -> None:
        super().__init__(settings, redis, BACKEND_TYPE)

    async def reserve(self, who: Caller, plan: Plan, timeout_s: float) -> Hold | None:
        return await self.hold(
            who,
            mode=plan.mode,
            request_id=plan.request_id,
            routes=[Route(plan.provider, plan.job.model)],
            worst_case=plan.worst_case,
            timeout_s=timeout_s,
        )
