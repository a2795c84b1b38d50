"""billing-svc settings: every field is read from the environment with the prefix BILLING_SVC_."""

from __future__ import annotations

import os
import socket

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from svc_common import usage_events
from svc_common.environment import CommaList, DataServiceSettings


def _default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(DataServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_SVC_", extra="ignore")

    # database_url, db_pool_min_size/db_pool_max_size (10) and migrate_on_start:
    # DataServiceSettings. SecretStr: a Redis URL may carry a password; default the local server.
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # billing-svc's floor of 2 connections, kept from its former DB_POOL_SIZE.
    db_pool_max_size: int = Field(default=10, ge=2)

    # The usage stream and its consumer group; every billing-svc replica joins the same group.
    usage_stream: str = usage_events.STREAM
    consumer_group: str = usage_events.CONSUMER_GROUP
    # Unique per process: a restarted process is a new consumer, its predecessor's pending
    # entries are claimed by whichever replica sees them idle past claim_idle_ms.
    consumer_name: str = Field(default_factory=_default_consumer_name)
    dead_letter_stream: str = usage_events.DEAD_LETTER_STREAM
    # Above the worst time a batch can take, or live consumers' entries get claimed (harmless:
    # applying twice changes nothing, but it is wasted work).
    claim_idle_ms: int = Field(default=30_000, ge=1)
    claim_interval_s: float = Field(default=5.0, gt=0)
    # Deliveries (reads, re-reads and claims) after which an entry goes to the dead-letter stream.
    max_deliveries: int = Field(default=5, ge=1)
    batch_size: int = Field(default=500, ge=1)
    # After a batch smaller than batch_size, wait this long before reading again: fewer, larger
    # transactions under load, at the price of a charge reaching the balance this much later.
    batch_linger_s: float = Field(default=0.01, ge=0, le=1.0)
    block_ms: int = Field(default=1_000, ge=1)
    trim_interval_s: float = Field(default=60.0, gt=0)
    # How often the consumer reports the group's lag, pending entries and dead letters.
    metrics_interval_s: float = Field(default=5.0, gt=0)
    # Run the usage consumer and the hold sweeper in this process (off: gRPC only).
    run_consumer: bool = True

    # Holds not settled by a usage event within this time are returned to the account.
    hold_ttl_s: int = Field(default=600, ge=1)
    sweep_interval_s: float = Field(default=10.0, gt=0)

    # Credit leases (OpenLease): sized for this many requests of the asking request's worst case,
    # but never more than available // lease_share_divisor, so one process's lease leaves the
    # rest of the balance to the user's other processes and requests.
    lease_requests: int = Field(default=16, ge=1)
    lease_share_divisor: int = Field(default=4, ge=1)
    # The holder starts requests on a lease for this long; the sweeper returns a lease never
    # closed hold_ttl_s after that.
    lease_use_s: float = Field(default=30.0, gt=0)
    # Operators edit billing.prices with SQL; a change takes effect within this many seconds.
    price_cache_s: float = Field(default=5.0, ge=0)

    # Credited once to every new account (ledger grant "welcome:<user>"); 0 = none.
    starting_balance_micros: int = Field(default=0, ge=0)
    # Service identities allowed to call Grant (comma-separated in the environment).
    grant_services: CommaList = Field(default_factory=lambda: ["operator"])
