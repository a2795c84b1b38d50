"""multimodal-svc's money around one request: a hold for the worst case before a member call
(text input bound + image tokens per provider + max output, `svc_common.holds`), and exactly one
usage event under backend type `multimodal` after it (every mode; BYOK moves no credits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_codecs import TokenUsage
from grpc_stubs.common.v1 import common_pb2
from multimodal_svc.config_source import BACKEND_TYPE
from multimodal_svc.environment import Settings
from multimodal_svc.plan import Plan, output_tokens_estimate
from svc_common import metering
from svc_common.auth import Caller
from svc_common.holds import NO_BALANCE, Hold, Route, charged_to
from svc_common.usage_events import UsageEvent, now_ms

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["NO_BALANCE", "Hold", "Metering", "UsageRecord"]


class UsageRecord:
    """What one request generated, turned into its usage event when it ends."""

    __slots__ = ("_plan", "_user_id", "chars", "deltas", "hold", "published", "started", "usage")

    def __init__(self, who: Caller, plan: Plan, hold: Hold | None) -> None:
        self._plan = plan
        self._user_id = who.user_id
        self.hold = hold
        self.started = now_ms()
        self.deltas = 0
        self.chars = 0
        self.usage: TokenUsage | None = None
        self.published = False

    def add_delta(self, text: str) -> None:
        self.deltas += 1
        self.chars += len(text)

    def units(self) -> TokenUsage:
        """The provider's usage when it sent one, else our bound and count."""
        if self.usage is not None:
            return self.usage
        plan = self._plan
        return TokenUsage(plan.input_tokens_bound, output_tokens_estimate(self.deltas, self.chars))

    def event(self, outcome: str) -> UsageEvent:
        units = TokenUsage(0, 0) if outcome == "error" else self.units()
        plan = self._plan
        return UsageEvent(
            event_id=plan.request_id,
            user_id=self._user_id,
            backend_type=BACKEND_TYPE,
            provider=plan.route.provider,
            model=plan.route.model,
            mode=plan.mode,
            outcome=outcome,
            input_tokens=units.input_tokens,
            output_tokens=units.output_tokens,
            # Input images are billed as the input tokens they cost; `images` counts generated
            # images (priced per image), so it stays 0 here.
            **charged_to(self.hold),
            started_at_ms=self.started,
            ended_at_ms=now_ms(),
        )


class Metering(metering.Metering):
    def __init__(self, settings: Settings, redis: aioredis.Redis | None) -> None:
        super().__init__(settings, redis, BACKEND_TYPE)

    async def reserve(self, who: Caller, plan: Plan, timeout_s: float) -> Hold | None:
        """Hold the worst case before a member call; INSUFFICIENT_CREDITS passes through."""
        return await self.hold(
            who,
            mode=plan.mode,
            request_id=plan.request_id,
            routes=[Route(plan.route.provider, plan.route.model)],
            worst_case=common_pb2.Usage(
                input_tokens=plan.input_tokens_bound, output_tokens=plan.output_tokens_cap
            ),
            timeout_s=timeout_s,
        )
