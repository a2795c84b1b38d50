"""A model service's money plumbing: billing-svc holds (`svc_common.holds`) before member calls,
or debits from a credit lease (`svc_common.leases`) where the service turns leases on, and
exactly one usage event per call (`svc_common.usage_events`). What a call holds and what its
event counts are the service's policy (its `reserve` and usage record); this is the part every
model service shares. Without a billing target member mode runs without holds (development);
without Redis no usage events are published."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import Caller
from svc_common.environment import ModelServiceSettings
from svc_common.holds import Hold, HoldClient, Route
from svc_common.leases import LeaseBook
from svc_common.prices import Units
from svc_common.usage_events import UsageEvent, UsagePublisher

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Metering", "UsageRecord"]


class UsageRecord(Protocol):
    """One call's record: turned into its usage event once, when the call ends."""

    published: bool
    hold: Hold | None  # what the call set aside before its provider call (its event names it)

    def event(self, outcome: str) -> UsageEvent: ...


class Metering:
    """Holds (or credit-lease debits) and usage events under one backend type."""

    # A service whose member requests spend credit leases sets this (text-svc: many small,
    # frequent requests); the others take a hold per request (an image's worst case is large: a
    # lease sized in them would set aside much of a balance), and refuse <PREFIX>CREDIT_LEASE.
    leases_supported: ClassVar[bool] = False

    def __init__(
        self,
        settings: ModelServiceSettings,
        redis: aioredis.Redis | None,
        backend_type: str,
        *,
        holder: str = "",
    ) -> None:
        """`holder` names this process on its credit leases, for operators (host and pid)."""
        self.backend_type = backend_type
        self._usage = UsagePublisher(
            redis, settings.usage_stream, linger_s=settings.usage_publish_linger_s
        )
        self._publishes = redis is not None
        self._holds: HoldClient | None = None
        self._leases: LeaseBook | None = None
        prefix = settings.model_config.get("env_prefix", "")
        if settings.billing_target:
            if settings.service_token is None:
                raise RuntimeError(f"{prefix}SERVICE_TOKEN is required to call billing-svc")
            if settings.credit_lease and not self.leases_supported:
                raise RuntimeError(
                    f"{prefix}CREDIT_LEASE: {backend_type} requests take a hold each; unset it"
                )
            self._holds = HoldClient(
                settings.billing_target,
                settings.service_token.get_secret_value(),
                settings.internal_call_timeout_s,
            )
            if settings.credit_lease:
                self._leases = LeaseBook(
                    self._holds.billing,
                    settings.service_token.get_secret_value(),
                    holder=holder,
                    backend_type=backend_type,
                    timeout_s=settings.internal_call_timeout_s,
                    idle_s=settings.lease_idle_s,
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
        """Set `worst_case` aside before a member call: a debit from the user's credit lease
        when leases are on and the balance spares one, else a hold (Reserve). None: no hold is
        needed or there is no billing-svc. INSUFFICIENT_CREDITS passes through."""
        if mode != "member" or self._holds is None:
            return None
        if self._leases is not None:
            debit = await self._leases.take(who, routes, worst_case, timeout_s)
            if debit is not None:
                return Hold("", debit.balance_micros, debit)
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
        event = record.event(outcome)
        self._usage.submit(event)
        hold = record.hold
        if hold is not None and hold.lease is not None and self._leases is not None:
            # The lease gets back what the event's units do not cost, and counts the event:
            # its close tells billing-svc how many to wait for.
            units = Units(
                event.input_tokens,
                event.output_tokens,
                event.images,
                event.image_size,
                event.image_quality,
            )
            self._leases.finish(
                hold.lease, event.provider, event.model, units, published=self._publishes
            )

    async def drain(self, timeout_s: float) -> None:
        """Wait until every queued usage event is sent (shutdown), then stop the publisher."""
        await self._usage.drain(timeout_s)

    async def aclose(self) -> None:
        """After `drain`: close the credit leases (their events are sent), then the channel."""
        if self._leases is not None:
            await self._leases.aclose()
        if self._holds is not None:
            await self._holds.aclose()
