"""The price table (billing.prices) and the cost of a usage in integer micro-credits.

Prices are read from Postgres and cached for `price_cache_s` seconds, so an operator's UPDATE on
billing.prices takes effect within that time without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import asyncpg

from svc_common.prices import (
    IMAGE,
    INPUT_TOKEN,
    MICROS_PER_CREDIT,
    OUTPUT_TOKEN,
    PriceTable,
    UnitPrice,
    Units,
    UnknownPrice,
    format_credits,
)

# The pricing rule lives in svc_common.prices (a model service spending a lease prices with it
# too); re-exported here so billing-svc's modules keep one import.
__all__ = [
    "IMAGE",
    "INPUT_TOKEN",
    "MICROS_PER_CREDIT",
    "OUTPUT_TOKEN",
    "PriceBook",
    "PriceTable",
    "UnitPrice",
    "Units",
    "UnknownPrice",
    "format_credits",
    "table_from_records",
]


def table_from_records(rows: Iterable[asyncpg.Record]) -> PriceTable:
    return PriceTable.from_unit_prices(
        (
            row["provider"],
            row["model"],
            row["unit"],
            row["image_size"],
            row["image_quality"],
            row["price_micros"],
            row["per_units"],
        )
        for row in rows
    )


class PriceBook:
    """billing.prices, re-read at most every `max_age_s` seconds (0: on every call)."""

    def __init__(self, max_age_s: float) -> None:
        self._max_age_s = max_age_s
        self._table: PriceTable | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def current(self, pool: asyncpg.Pool | asyncpg.Connection) -> PriceTable:
        if self._fresh():
            assert self._table is not None
            return self._table
        async with self._lock:
            if not self._fresh():
                rows = await pool.fetch(
                    "SELECT provider, model, unit, image_size, image_quality, price_micros,"
                    " per_units FROM billing.prices"
                )
                self._table = table_from_records(rows)
                self._loaded_at = time.monotonic()
            assert self._table is not None
            return self._table

    def _fresh(self) -> bool:
        return (
            self._table is not None
            and self._max_age_s > 0
            and time.monotonic() - self._loaded_at < self._max_age_s
        )
