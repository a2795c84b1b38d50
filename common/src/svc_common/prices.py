"""The cost of a usage in integer micro-credits, from a table of unit prices (billing.prices rows).

The rule lives here once: billing-svc charges with it, and a model service that spends a credit
lease locally prices its requests with the same rule, from the prices the lease came with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "IMAGE",
    "INPUT_TOKEN",
    "MICROS_PER_CREDIT",
    "OUTPUT_TOKEN",
    "ModelPrices",
    "PriceRow",
    "PriceTable",
    "UnitPrice",
    "Units",
    "UnknownPrice",
    "format_credits",
]

MICROS_PER_CREDIT = 1_000_000

INPUT_TOKEN = "input_token"
OUTPUT_TOKEN = "output_token"
IMAGE = "image"


class UnknownPrice(LookupError):
    """No price for a unit the usage needs; the message says which, in a user's words."""


@dataclass(frozen=True, slots=True)
class Units:
    """Units of one usage (or the worst case a hold or a lease debit sets aside for)."""

    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    image_size: str = ""
    image_quality: str = ""


@dataclass(frozen=True, slots=True)
class UnitPrice:
    price_micros: int
    per_units: int

    def cost(self, units: int) -> int:
        # ceil(units * price / per) in integers: a fraction of a micro-credit is charged as one.
        return -(-units * self.price_micros // self.per_units)


# (unit, image_size, image_quality) -> price, for one provider and model.
ModelPrices = Mapping[tuple[str, str, str], UnitPrice]

# One billing.prices row:
# (provider, model, unit, image_size, image_quality, price_micros, per_units).
PriceRow = tuple[str, str, str, str, str, int, int]


def format_credits(micros: int) -> str:
    """Micro-credits as credits for people, without floats: 1500000 -> "1.5"."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_CREDIT)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return f"{sign}{text}"


class PriceTable:
    """An immutable snapshot of unit prices, per (provider, model)."""

    def __init__(self, models: Mapping[tuple[str, str], ModelPrices]) -> None:
        self._models = models

    @classmethod
    def from_unit_prices(cls, rows: Iterable[PriceRow]) -> PriceTable:
        """The table of `rows`, each (provider, model, unit, image_size, image_quality,
        price_micros, per_units) as in billing.prices."""
        models: dict[tuple[str, str], dict[tuple[str, str, str], UnitPrice]] = {}
        for provider, model, unit, image_size, image_quality, price_micros, per_units in rows:
            prices = models.setdefault((provider, model), {})
            prices[(unit, image_size, image_quality)] = UnitPrice(price_micros, per_units)
        return cls(models)

    def has_model(self, provider: str, model: str) -> bool:
        return (provider, model) in self._models

    def unit_prices(self, routes: Iterable[tuple[str, str]]) -> list[PriceRow]:
        """The rows of `routes` ((provider, model)), each route once: what a credit lease hands
        its holder, so it prices those routes as billing-svc does (`from_unit_prices`)."""
        rows: list[PriceRow] = []
        for provider, model in dict.fromkeys(routes):
            for (unit, size, quality), price in self._models.get((provider, model), {}).items():
                rows.append(
                    (provider, model, unit, size, quality, price.price_micros, price.per_units)
                )
        return rows

    def cost(self, provider: str, model: str, units: Units) -> int:
        """The cost of `units` in micro-credits; raises UnknownPrice for a unit without a price."""
        prices = self._models.get((provider, model))
        if prices is None:
            raise UnknownPrice(
                f"no price for {provider}/{model}; member mode is not available for it"
            )
        total = 0
        for unit, count in ((INPUT_TOKEN, units.input_tokens), (OUTPUT_TOKEN, units.output_tokens)):
            if count:
                price = prices.get((unit, "", ""))
                if price is None:
                    raise UnknownPrice(
                        f"no {unit} price for {provider}/{model};"
                        " member mode is not available for it"
                    )
                total += price.cost(count)
        if units.images:
            image_price = _image_price(prices, units.image_size, units.image_quality)
            if image_price is None:
                raise UnknownPrice(
                    f"no image price for {provider}/{model} at size"
                    f" {units.image_size or '(none)'!r} and quality"
                    f" {units.image_quality or '(none)'!r}; member mode is not available for it"
                )
            total += image_price.cost(units.images)
        return total

    def costliest(self, routes: Sequence[tuple[str, str]], units: Units) -> int:
        """The cost of `units` on the dearest of `routes` ((provider, model), the primary first).

        A hold must cover whichever route the request ends up taking, so every route needs a
        price: UnknownPrice names the first that has none (and says when it is a fallback).
        """
        costs = []
        for i, (provider, model) in enumerate(routes):
            try:
                costs.append(self.cost(provider, model, units))
            except UnknownPrice as exc:
                if i == 0:
                    raise
                raise UnknownPrice(
                    f"{exc}, so it cannot be the fallback of a member request:"
                    " choose a priced fallback model or none"
                ) from None
        return max(costs)


def _image_price(prices: ModelPrices, size: str, quality: str) -> UnitPrice | None:
    # The most specific row wins; '' in the table stands for any size or quality.
    for key in ((IMAGE, size, quality), (IMAGE, size, ""), (IMAGE, "", quality), (IMAGE, "", "")):
        price = prices.get(key)
        if price is not None:
            return price
    return None
