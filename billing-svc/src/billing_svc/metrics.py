"""billing-svc's own metrics (beside the gRPC ones): the usage consumer's view of its stream
(lag, pending entries, the dead-letter stream), what it applied, how long settlement takes, and
the sweeper of holds and credit leases. Every replica reports the consumer group's lag and
pending entries as it sees them: aggregate them with max(), not sum()."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from svc_common.metrics import REGISTRY

__all__ = [
    "APPLIED",
    "CONSUMER_LAG",
    "DEAD_LETTERED",
    "DEAD_LETTER_ENTRIES",
    "HOLDS_EXPIRED",
    "HOLD_SWEEPS",
    "LEASES_EXPIRED",
    "PENDING_ENTRIES",
    "SETTLEMENT_SECONDS",
]

CONSUMER_LAG = Gauge(
    "billing_usage_consumer_lag",
    "Usage events in the stream not yet delivered to the billing consumer group",
    registry=REGISTRY,
)
PENDING_ENTRIES = Gauge(
    "billing_usage_pending_entries",
    "Usage events delivered to a billing consumer and not yet acknowledged (applied)",
    registry=REGISTRY,
)
DEAD_LETTER_ENTRIES = Gauge(
    "billing_usage_dead_letter_entries",
    "Entries in the dead-letter stream: each one is usage that was not billed (see operations.md)",
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "billing_usage_dead_lettered",
    "Usage entries this process moved to the dead-letter stream, by reason",
    ["reason"],
    registry=REGISTRY,
)
APPLIED = Counter(
    "billing_usage_events_applied",
    "Usage events applied (new) or found in the ledger already (duplicate)",
    ["result"],
    registry=REGISTRY,
)
SETTLEMENT_SECONDS = Histogram(
    "billing_settlement_seconds",
    "One settlement transaction (a batch of usage events: ledger rows, holds settled, balances)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
HOLD_SWEEPS = Counter(
    "billing_hold_sweeps",
    "Passes of the sweeper of holds and credit leases, by result (ok, failed)",
    ["result"],
    registry=REGISTRY,
)
HOLDS_EXPIRED = Counter(
    "billing_holds_expired",
    "Holds past their expiry returned to their accounts by the sweeper",
    registry=REGISTRY,
)
LEASES_EXPIRED = Counter(
    "billing_leases_expired",
    "Credit leases past their expiry (never closed: their holder died) whose unspent credits the"
    " sweeper returned",
    registry=REGISTRY,
)
