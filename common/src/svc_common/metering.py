"""A model service's money plumbing: billing-svc holds (`svc_common.holds`) before member calls
and exactly one usage event per call (`svc_common.usage_events`). What a call holds and what its
event counts are the service's policy (its `reserve` and usage record); this is the part every
model service shares. Without a billing target member mode runs without holds (development);
without Redis no usage events are published."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import Caller
from svc_common.environment import ModelServiceSettings
from svc_common.holds import Hold, HoldClient, Route
from svc_common.usage_events import UsageEvent, UsagePublisher

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Metering", "UsageRecord"]


class UsageRecord(Protocol):
    """One call's record: turned into its usage event once, when the call ends."""

    published: bool

    def event(self, outcome: str) -> UsageEvent: ...


class Metering:
    """Holds and usage events under one backend type."""

    def __init__(
        self, settings: ModelServiceSettings, redis: aioredis.Redis | None, backend_type: str
    ) -> None:
        self.backend_type = backend_type
        self._usage = UsagePublisher(redis, settings.usage_stream)
        self._holds: HoldClient | None = None
        if settings.billing_target:
            if settings.service_token is None:
                prefix = settings.model_config.get("env_prefix", "")
                raise RuntimeError(f"{prefix}SERVICE_TOKEN is required to call billing-svc")
            self._holds = HoldClient(
                settings.billing_target,
                settings.service_token.get_secret_value(),
                settings.internal_call_timeout_s,
            )

    async def hold(
        self,
        who: Caller,
        *,
        mode: str,
        request_id: str,
        routes: Sequence[Route],
        worst_case: common_pb2.Usage,
        timeout_s: float,
    ) -> Hold | None:
        """Hold `worst_case` before a member call (None: no hold is needed or there is no
        billing-svc); INSUFFICIENT_CREDITS passes through."""
        if mode != "member" or self._holds is None:
            return None
        return await self._holds.reserve(
            who,
            request_id=request_id,
            backend_type=self.backend_type,
            routes=routes,
            worst_case=worst_case,
            timeout_s=timeout_s,
        )

    def finish(self, record: UsageRecord, outcome: str) -> None:
        """Queue the call's one usage event. Never awaits: it runs in `finally` blocks of tasks
        being cancelled; the publisher task (drained at shutdown) sends it."""
        if record.published:
            return
        record.published = True
        self._usage.submit(record.event(outcome))

    async def drain(self, timeout_s: float) -> None:
        """Wait until every queued usage event is sent (shutdown), then stop the publisher."""
        await self._usage.drain(timeout_s)

    async def aclose(self) -> None:
        if self._holds is not None:
            await self._holds.aclose()
