"""Money and usage around one generation: the credit hold before (member mode, billing-svc
`Reserve`), and exactly one usage event after (every mode), published to the Redis stream that
billing-svc consumes. Without TEXT_SVC_BILLING_TARGET member mode runs without holds
(development); without TEXT_SVC_REDIS_URL no usage events are published."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import grpc

from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from svc_common import grpc_client
from svc_common.auth import Caller, forward_metadata
from svc_common.errors import from_rpc_error, reraise
from svc_common.usage_events import UsageEvent, now_ms
from text_svc.config import Settings
from text_svc.plan import Plan, output_tokens_estimate
from text_svc.providers.base import TokenUsage

log = logging.getLogger(__name__)

NO_BALANCE = -1  # GenerateResponse.balance_micros when no hold was taken
_PUBLISH_ATTEMPTS = 4
_BATCH = 500  # events per pipelined round trip


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    balance_micros: int


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
            backend_type="text",
            provider=self.provider,
            model=self.model,
            mode=self._plan.mode,
            outcome=outcome,
            input_tokens=units.input_tokens,
            output_tokens=units.output_tokens,
            hold_id=self.hold.hold_id if self.hold else "",
            started_at_ms=self.started_at_ms,
            ended_at_ms=now_ms(),
        )


class Metering:
    def __init__(self, settings: Settings, redis: Any | None) -> None:
        self._settings = settings
        self._redis = redis
        self._stream = settings.usage_stream
        self._timeout = settings.internal_call_timeout_s
        self._queue: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._billing: billing_pb2_grpc.BillingServiceStub | None = None
        self._token = ""
        if settings.billing_target:
            if settings.service_token is None:
                raise RuntimeError("TEXT_SVC_SERVICE_TOKEN is required to call billing-svc")
            self._token = settings.service_token.get_secret_value()
            self._channel = grpc_client.channel(settings.billing_target)
            self._billing = billing_pb2_grpc.BillingServiceStub(self._channel)

    async def reserve(self, who: Caller, plan: Plan, timeout_s: float) -> Hold | None:
        """Hold the worst-case cost of the dearest route before a member call;
        INSUFFICIENT_CREDITS passes through."""
        if plan.mode != "member" or self._billing is None:
            return None
        route = plan.routes[0]
        request = billing_pb2.ReserveRequest(
            request_id=plan.request_id,  # minted for this call (the hold id)
            backend_type=common_pb2.BACKEND_TYPE_TEXT,
            provider=route.provider,
            model=route.model,
            worst_case=common_pb2.Usage(
                input_tokens=plan.input_tokens_bound, output_tokens=plan.output_tokens_cap
            ),
            # The request may end on a fallback: the hold covers the dearest route, and a
            # fallback without a price refuses it before any provider is called.
            alternatives=[
                billing_pb2.Route(provider=r.provider, model=r.model) for r in plan.routes[1:]
            ],
        )
        # x-request-id stays the caller's correlation id: billing-svc's logs join up with ours.
        metadata = forward_metadata(self._token, who)
        try:
            response = await self._billing.Reserve(
                request, metadata=metadata, timeout=min(timeout_s, self._timeout)
            )
        except grpc.aio.AioRpcError as err:
            raise reraise(from_rpc_error(err)) from None
        return Hold(response.hold_id, response.balance_micros)

    def finish(self, record: UsageRecord, outcome: str) -> None:
        """Queue the request's one usage event. Never awaits: it runs in `finally` blocks of
        tasks being cancelled; the publisher task (drained at shutdown) sends it."""
        if record.published:
            return
        record.published = True
        if self._redis is None:
            return
        self._queue.append(record.event(outcome))
        self._wake.set()
        if self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_queued())

    async def _publish_queued(self) -> None:
        """Send queued events in batches: one pipelined round trip for all that arrived since the
        last, instead of a task and a round trip per request."""
        assert self._redis is not None
        failures = 0
        while True:
            await self._wake.wait()
            # No waiting to gather more: the events that arrive while a batch is in flight go
            # together in the next one, so batches grow with the load and a lone request's charge
            # reaches the balance at once.
            self._wake.clear()
            while self._queue:
                batch = self._queue[:_BATCH]
                pipe = self._redis.pipeline(transaction=False)
                for event in batch:
                    pipe.xadd(self._stream, event.to_fields())  # as usage_events.publish does
                try:
                    await pipe.execute()
                except Exception as err:
                    failures += 1
                    if failures < _PUBLISH_ATTEMPTS:
                        await asyncio.sleep(0.1 * 4**failures)
                        continue
                    for event in batch:
                        # Lost to billing unless replayed from this line (no key in it).
                        log.error(
                            "usage event not published (%s): %s",
                            type(err).__name__,
                            event.to_fields(),
                            extra={"event_id": event.event_id},
                        )
                failures = 0
                del self._queue[: len(batch)]
                if not self._queue:
                    self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait until every queued usage event is sent (shutdown), then stop the publisher."""
        if self._publisher is None:
            return
        if self._queue:
            self._idle.clear()
            self._wake.set()
            try:
                async with asyncio.timeout(timeout_s):
                    while self._queue:
                        await self._idle.wait()
                        self._idle.clear()
            except TimeoutError:
                log.error("%d usage events still unpublished at shutdown", len(self._queue))
        self._publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._publisher
        self._publisher = None

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
