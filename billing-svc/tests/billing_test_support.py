"""Helpers for billing-svc tests (imported by tests; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import redis.asyncio as aioredis

from billing_svc.consumer import UsageConsumer
from billing_svc.environment import Settings
from billing_svc.prices import PriceBook
from billing_svc.server import BillingServer
from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from svc_common.auth import mint_service_token, outgoing_metadata
from svc_common.usage_events import UsageEvent, now_ms, publish

SECRET = "billing-test-secret"


def billing_settings(
    database_url: str, redis_url: str, redis_prefix: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "service_token_secret": SECRET,
        "database_url": database_url,
        "redis_url": redis_url,
        "usage_stream": f"{redis_prefix}usage-events",
        "consumer_group": f"{redis_prefix}billing",
        "dead_letter_stream": f"{redis_prefix}usage-events-dead",
        "consumer_name": f"{redis_prefix}consumer-{uuid.uuid4().hex[:6]}",
        "block_ms": 100,
        "claim_interval_s": 0.2,
        "sweep_interval_s": 0.2,
        "price_cache_s": 0,
        "grace_seconds": 5,
    }
    values.update(overrides)
    return Settings(**values)


async def wait_for(
    condition: Callable[[], Awaitable[bool]], within_s: float = 20.0, what: str = "condition"
) -> None:
    """Poll `condition` until it holds; fail after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.02)


class Billing:
    """A running billing-svc with clients for a user-acting service and an operator."""

    def __init__(self, server: BillingServer, channel: grpc.aio.Channel, redis: aioredis.Redis):
        self.server = server
        self.settings = server.settings
        self.pool = server.pool
        self.redis = redis
        self.stub = billing_pb2_grpc.BillingServiceStub(channel)
        self.text_svc_token = mint_service_token(SECRET, "text-svc")
        self.operator_token = mint_service_token(SECRET, "operator")

    def as_user(self, user_id: str) -> tuple[tuple[str, str], ...]:
        return outgoing_metadata(self.text_svc_token, user_id=user_id, is_member=True)

    async def grant(self, user_id: str, amount_micros: int, grant_id: str | None = None) -> int:
        response = await self.stub.Grant(
            billing_pb2.GrantRequest(
                user_id=user_id,
                amount_micros=amount_micros,
                grant_id=grant_id or uuid.uuid4().hex,
                reason="test",
            ),
            metadata=outgoing_metadata(self.operator_token),
            timeout=10,
        )
        return response.balance_micros

    async def reserve(
        self,
        user_id: str,
        request_id: str,
        *,
        provider: str = "openai",
        model: str = "gpt-4o-mini",
        input_tokens: int = 1_000,
        output_tokens: int = 1_000,
        backend_type: int = common_pb2.BACKEND_TYPE_TEXT,
        **usage: Any,
    ) -> billing_pb2.ReserveResponse:
        return await self.stub.Reserve(
            billing_pb2.ReserveRequest(
                request_id=request_id,
                backend_type=backend_type,
                provider=provider,
                model=model,
                worst_case=common_pb2.Usage(
                    input_tokens=input_tokens, output_tokens=output_tokens, **usage
                ),
            ),
            metadata=self.as_user(user_id),
            timeout=10,
        )

    async def balance(self, user_id: str) -> billing_pb2.Balance:
        return await self.stub.GetBalance(
            billing_pb2.GetBalanceRequest(), metadata=self.as_user(user_id), timeout=10
        )

    async def list_usage(self, user_id: str, **filters: Any) -> list[billing_pb2.UsageTotal]:
        response = await self.stub.ListUsage(
            billing_pb2.ListUsageRequest(**filters), metadata=self.as_user(user_id), timeout=10
        )
        return list(response.totals)

    def consumer(self, **overrides: Any) -> UsageConsumer:
        """Another consumer in the same group (for tests that drive one by hand)."""
        settings = self.settings.model_copy(update=overrides)
        return UsageConsumer(settings, self.pool, PriceBook(0), self.redis)

    async def ledger_row(self, event_id: str) -> dict[str, Any]:
        row = await self.pool.fetchrow("SELECT * FROM billing.ledger WHERE event_id = $1", event_id)
        assert row is not None, f"no ledger row {event_id}"
        return dict(row)

    async def publish(self, event: UsageEvent) -> str:
        return await publish(self.redis, event, stream=self.settings.usage_stream)

    async def pending(self) -> int:
        summary = await self.redis.xpending(
            self.settings.usage_stream, self.settings.consumer_group
        )
        return int(summary["pending"])

    async def ledger_count(self, user_id: str) -> int:
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM billing.ledger"
            " WHERE user_id = $1 AND kind IN ('charge', 'usage')",
            user_id,
        )
        return count

    async def wait_applied(self, user_id: str, count: int, within_s: float = 20.0) -> None:
        """Wait until `count` usage rows exist for the user and nothing is left pending."""

        async def done() -> bool:
            return await self.ledger_count(user_id) >= count and await self.pending() == 0

        await wait_for(done, within_s, f"{count} usage events of {user_id} applied")

    async def assert_consistent(self, user_id: str) -> None:
        """available + open holds + the unspent part of open and closing leases == the sum of the
        user's ledger, and never negative."""
        row = await self.pool.fetchrow(
            "SELECT a.available_micros,"
            " (SELECT coalesce(sum(amount_micros), 0) FROM billing.holds h"
            "   WHERE h.user_id = a.user_id AND h.status = 'open')::bigint AS held,"
            " (SELECT coalesce(sum(amount_micros - spent_micros), 0) FROM billing.leases s"
            "   WHERE s.user_id = a.user_id AND s.status IN ('open', 'closing'))::bigint AS leased,"
            " (SELECT coalesce(sum(amount_micros), 0) FROM billing.ledger l"
            "   WHERE l.user_id = a.user_id)::bigint AS ledger_total"
            " FROM billing.accounts a WHERE a.user_id = $1",
            user_id,
        )
        assert row["available_micros"] >= 0
        assert row["available_micros"] + row["held"] + row["leased"] == row["ledger_total"]


def usage_event(user_id: str, **fields: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "event_id": f"req-{uuid.uuid4().hex}",
        "user_id": user_id,
        "backend_type": "text",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "mode": "member",
        "outcome": "success",
        "input_tokens": 100,
        "output_tokens": 200,
        "started_at_ms": now_ms() - 500,
        "ended_at_ms": now_ms(),
    }
    values.update(fields)
    return UsageEvent(**values)
