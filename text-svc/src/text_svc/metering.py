"""text-svc's policy around one generation's money: the worst case in tokens set aside before a
member call, debited from the user's credit lease (`svc_common.leases`, TEXT_SVC_CREDIT_LEASE)
or held per request (`svc_common.holds`), and exactly one usage event after (every mode),
counted in tokens and naming the hold or the lease (`svc_common.usage_events`). Without
TEXT_SVC_BILLING_TARGET member mode runs without holds (development); without
TEXT_SVC_REDIS_URL no usage events are published."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpc_stubs.common.v1 import common_pb2
from svc_common import metering
from svc_common.auth import Caller
from svc_common.holds import NO_BALANCE, Hold, Route, charged_to
from svc_common.usage_events import UsageEvent, now_ms
from text_svc.environment import Settings
from text_svc.plan import Plan, output_tokens_estimate
from text_svc.providers.base import TokenUsage

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["NO_BALANCE", "Hold", "Metering", "UsageRecord"]

BACKEND_TYPE = "text"


class UsageRecord:
    """What one request generated, turned into its usage event when it ends."""

    __slots__ = (
        "_plan",
        "_user_id",
        "chars",
        "deltas",
        "hold",
        "model",
        "provider",
        "published",
        "started_at_ms",
        "usage",
    )

    def __init__(self, who: Caller, plan: Plan, hold: Hold | None) -> None:
        self._plan = plan
        self._user_id = who.user_id
        self.hold = hold
        self.provider = plan.routes[0].provider
        self.model = plan.routes[0].model
        self.started_at_ms = now_ms()
        self.deltas = 0
        self.chars = 0
        self.usage: TokenUsage | None = None
        self.published = False

    def add_delta(self, text: str) -> None:
        self.deltas += 1
        self.chars += len(text)

    def units(self) -> TokenUsage:
        """The provider's usage when it sent one, else our count: input from the upper bound,
        output at least one token per delta and about four characters each."""
        if self.usage is not None:
            return self.usage
        return TokenUsage(
            self._plan.input_tokens_bound, output_tokens_estimate(self.deltas, self.chars)
        )

    def event(self, outcome: str) -> UsageEvent:
        # "error": nothing was generated; zero units settle the hold to nothing.
        units = TokenUsage(0, 0) if outcome == "error" else self.units()
        return UsageEvent(
            event_id=self._plan.request_id,
            user_id=self._user_id,
            backend_type=BACKEND_TYPE,
            provider=self.provider,
            model=self.model,
            mode=self._plan.mode,
            outcome=outcome,
            input_tokens=units.input_tokens,
            output_tokens=units.output_tokens,
            **charged_to(self.hold),
            started_at_ms=self.started_at_ms,
            ended_at_ms=now_ms(),
        )


class Metering(metering.Metering):
    leases_supported = True

    def __init__(self, settings: Settings, redis: aioredis.Redis | None, *, holder: str) -> None:
        super().__init__(settings, redis, BACKEND_TYPE, holder=holder)

    async def reserve(self, who: Caller, plan: Plan, timeout_s: float) -> Hold | None:
        """Set the worst-case cost of the dearest route aside before a member call (a lease
        debit or a hold); INSUFFICIENT_CREDITS passes through."""
        return await self.hold(
            who,
            mode=plan.mode,
            request_id=plan.request_id,  # minted for this call (the hold id)
            routes=[Route(r.provider, r.model) for r in plan.routes],
            worst_case=common_pb2.Usage(
                input_tokens=plan.input_tokens_bound, output_tokens=plan.output_tokens_cap
            ),
            timeout_s=timeout_s,
        )
