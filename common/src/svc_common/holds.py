"""The credit hold a model service takes before a member-mode call: billing-svc `Reserve`, or a
local debit from a credit lease (`svc_common.leases`) that billing-svc already set aside.

The hold covers the worst case of the dearest route the request may take (its primary and its
fallbacks), in whatever units the backend type bills (tokens, or images by size and quality).
INSUFFICIENT_CREDITS and every other refusal pass through as the ServiceError billing-svc sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import grpc

from grpc_stubs.billing.v1 import billing_pb2, billing_pb2_grpc
from grpc_stubs.common.v1 import common_pb2
from svc_common import grpc_client
from svc_common.auth import Caller, forward_metadata
from svc_common.errors import from_rpc_error, reraise
from svc_common.names import BACKEND_TYPE_ENUMS

if TYPE_CHECKING:
    from svc_common.leases import Debit

__all__ = ["NO_BALANCE", "ChargedTo", "Hold", "HoldClient", "Route", "charged_to"]

NO_BALANCE = -1  # a response's balance_micros when no hold was taken


@dataclass(frozen=True, slots=True)
class Hold:
    """What a member call set aside before its provider call: a billing-svc hold (`hold_id`),
    or a debit from a credit lease (`lease`; then `hold_id` is empty)."""

    hold_id: str
    balance_micros: int  # available after the hold (a lease's unspent part counted as the user's)
    lease: Debit | None = None


class ChargedTo(TypedDict):
    """A usage event's fields naming what its call set aside (see `charged_to`)."""

    hold_id: str
    lease_id: str
    lease_debit_micros: int


def charged_to(hold: Hold | None) -> ChargedTo:
    """The usage event's fields for what the call set aside: its hold, or its credit lease and
    the worst case debited from it (billing-svc charges that if the route's price is gone).
    Every model service's event takes them from here, so none names one and forgets the other."""
    if hold is None:
        return ChargedTo(hold_id="", lease_id="", lease_debit_micros=0)
    lease = hold.lease
    return ChargedTo(
        hold_id=hold.hold_id,
        lease_id=lease.lease_id if lease is not None else "",
        lease_debit_micros=lease.worst_micros if lease is not None else 0,
    )


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    model: str


class HoldClient:
    """billing-svc's Reserve over one channel, with the calling service's token."""

    def __init__(self, target: str, service_token: str, timeout_s: float) -> None:
        self._token = service_token
        self._timeout = timeout_s
        self._channel = grpc_client.channel(target)
        self._billing = billing_pb2_grpc.BillingServiceStub(self._channel)

    @property
    def billing(self) -> billing_pb2_grpc.BillingServiceStub:
        """billing-svc's stub on this client's channel (credit leases use the same one)."""
        return self._billing

    async def reserve(
        self,
        who: Caller,
        *,
        request_id: str,
        backend_type: str,
        routes: Sequence[Route],
        worst_case: common_pb2.Usage,
        timeout_s: float,
    ) -> Hold:
        """Hold `worst_case` priced on the dearest of `routes` (the first is the primary).

        `request_id` is the id the service minted for this call (the hold id, later the usage
        event's id), never a client's.
        """
        primary, *alternatives = routes
        request = billing_pb2.ReserveRequest(
            request_id=request_id,
            backend_type=BACKEND_TYPE_ENUMS[backend_type],
            provider=primary.provider,
            model=primary.model,
            worst_case=worst_case,
            # The request may end on a fallback: the hold covers the dearest route, and a
            # fallback without a price refuses it before any provider is called.
            alternatives=[
                billing_pb2.Route(provider=r.provider, model=r.model) for r in alternatives
            ],
        )
        # x-request-id stays the caller's correlation id: billing-svc's logs join up with ours.
        try:
            response = await self._billing.Reserve(
                request,
                metadata=forward_metadata(self._token, who),
                timeout=min(timeout_s, self._timeout),
            )
        except grpc.aio.AioRpcError as err:
            raise reraise(from_rpc_error(err)) from None
        return Hold(response.hold_id, response.balance_micros)

    async def aclose(self) -> None:
        await self._channel.close()
