"""Exact money arithmetic on Polars Decimal columns: never floats, and one rounding rule.

Internally every amount is `Decimal(38, 8)`: at most 8 decimal places, which is also
what the receiver accepts. Products (amount x rate, amount x percent) are computed at
scale 18, where the product of an 8-place amount and a 10-place rate is exact, and then
rounded once, half-to-even, to 8 places. Wallet credits and reconciliation compare
at cents: rounded half-to-even to 2 places (`to_cents`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl

MONEY_SCALE = 8
RATE_SCALE = 10
MONEY = pl.Decimal(38, MONEY_SCALE)  # amounts, in the currency named beside them
CENTS = pl.Decimal(38, 2)  # wallet entries and reconciliation amounts
RATE = pl.Decimal(38, RATE_SCALE)  # fx rates: units of base currency per unit of currency
_WIDE = pl.Decimal(38, 18)
HUNDRED = Decimal(100)


def mul(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """a x b, exact at scale 18, rounded half-to-even to 8 places."""
    return (a.cast(_WIDE) * b.cast(_WIDE)).round(MONEY_SCALE, mode="half_to_even").cast(MONEY)


def percent_of(amount: pl.Expr, percent: pl.Expr) -> pl.Expr:
    """amount x percent / 100, rounded once, half-to-even, to 8 places."""
    return (amount.cast(_WIDE) * percent.cast(_WIDE) / pl.lit(HUNDRED, dtype=_WIDE)).round(
        MONEY_SCALE, mode="half_to_even").cast(MONEY)


def to_cents(amount: pl.Expr) -> pl.Expr:
    """An 8-place amount rounded half-to-even to cents."""
    return amount.round(2, mode="half_to_even").cast(CENTS)


def cents(value: Decimal) -> Decimal:
    """The Python twin of `to_cents`, for single values."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
