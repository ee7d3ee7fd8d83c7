"""Pricing per DESIGN.md section 5, in exact rational arithmetic, rounded once per line.

Amounts are computed as `Fraction` (no rounding at all, even for prorations such as
49.00 × 1,123,200 s / 2,419,200 s) and rounded half-up to the currency's minor unit
(`meterlake.currency.round_money`) only when a line is made, so a line is always the
exact value correctly rounded.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from meterlake.catalog.model import Charge, Tier

Number = Decimal | Fraction | int


def prorate(amount: Number, seconds: int, full_seconds: int) -> Fraction:
    """``amount`` for ``seconds`` of a ``full_seconds`` period, exactly."""
    return Fraction(amount) * seconds / full_seconds


def _tier_bounds(tiers: tuple[Tier, ...]) -> list[tuple[Fraction, Fraction | None, Tier]]:
    """Each tier with its exclusive lower and inclusive upper bound."""
    bounds = []
    lower = Fraction(0)
    for tier in tiers:
        upper = None if tier.up_to is None else Fraction(tier.up_to)
        bounds.append((lower, upper, tier))
        lower = upper if upper is not None else lower
    return bounds


def price_graduated(quantity: Number, tiers: tuple[Tier, ...]) -> Fraction:
    """Each tier prices the units that fall in it; a tier's flat price is added once when
    the quantity exceeds its lower bound."""
    q = Fraction(quantity)
    total = Fraction(0)
    for lower, upper, tier in _tier_bounds(tiers):
        if q <= lower:
            break
        units = (q if upper is None else min(q, upper)) - lower
        total += units * Fraction(tier.unit_price)
        if tier.flat_price is not None:
            total += Fraction(tier.flat_price)
    return total


def price_volume(quantity: Number, tiers: tuple[Tier, ...]) -> Fraction:
    """All units at the unit price of the tier the quantity falls in (``up_to`` inclusive);
    that tier's flat price is added when the quantity exceeds its lower bound."""
    q = Fraction(quantity)
    for lower, upper, tier in _tier_bounds(tiers):
        if upper is None or q <= upper:
            flat = Fraction(tier.flat_price) if tier.flat_price is not None and q > lower else 0
            return q * Fraction(tier.unit_price) + flat
    raise AssertionError("the catalog guarantees an unbounded last tier")


def price_package(quantity: Number, size: Number, price: Number) -> Fraction:
    """``ceil(quantity / size)`` packages at ``price`` each."""
    return math.ceil(Fraction(quantity) / Fraction(size)) * Fraction(price)


def price_usage(charge: Charge, quantity: Number) -> Fraction:
    """The exact amount of one usage charge for ``quantity`` units."""
    if charge.model == "per_unit":
        return Fraction(quantity) * Fraction(charge.unit_price)
    if charge.model == "package":
        return price_package(quantity, charge.package_size, charge.package_price)
    if charge.model == "graduated":
        return price_graduated(quantity, charge.tiers)
    if charge.model == "volume":
        return price_volume(quantity, charge.tiers)
    raise ValueError(f"unknown pricing model {charge.model!r}")
