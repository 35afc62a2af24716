"""Currency normalisation: DATA/fx_rates.csv and the as-of rate lookup.

`date,currency,rate`: `rate` units of the base currency (config `base_currency`)
buy one unit of `currency`, from `date` (a UTC day) on. A conversion uses the rate of
its UTC day or the latest earlier one. The base currency always has rate 1. A
currency with no rate on or before the day gets a null rate: the amount in base
currency stays null (never a silent zero), and the conversion does not count.
Rates are exact decimals rounded half-to-even to 10 places.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline import schemas
from pipeline.errors import FxRatesError
from pipeline.money import RATE

REQUIRED = ("date", "currency", "rate")


def read_fx_rates(path: Path) -> pl.DataFrame:
    """The rates file as a validated frame; an absent file is an empty table (every rate missing)."""
    if not path.exists():
        return schemas.empty("fx_rates")
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # polars raises several error types for unreadable CSV
        raise FxRatesError(f"{path}: cannot read it as CSV: {exc}") from None
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise FxRatesError(f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(raw.columns)}. "
                           "Expected a header line `date,currency,rate`.")
    parsed = raw.with_row_index("line", offset=2).select(
        "line",
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("date"),
        pl.col("currency").str.strip_chars().str.to_uppercase().alias("currency"),
        pl.col("rate").str.strip_chars().str.to_decimal(scale=10).cast(RATE).alias("rate"),
        pl.col("date").alias("date_text"),
        pl.col("rate").alias("rate_text"),
    )
    bad = parsed.filter(pl.col("date").is_null() | pl.col("rate").is_null() | (pl.col("rate") <= 0)
                        | ~pl.col("currency").fill_null("").str.contains(r"^[A-Z]{3}$"))
    if not bad.is_empty():
        shown = "; ".join(f"line {r['line']}: date={r['date_text']!r} currency={r['currency']!r} "
                          f"rate={r['rate_text']!r}" for r in bad.head(5).iter_rows(named=True))
        raise FxRatesError(f"{path}: {bad.height} unusable row(s) (dates are YYYY-MM-DD, rates positive "
                           f"numbers, currencies 3-letter codes): {shown}")
    dupes = parsed.filter(pl.struct("date", "currency").is_duplicated())
    if not dupes.is_empty():
        shown = ", ".join(f"{r['date']} {r['currency']}" for r in dupes.head(5).iter_rows(named=True))
        raise FxRatesError(f"{path}: more than one rate for the same day and currency: {shown}")
    rates = parsed.select("date", "currency", "rate").sort("currency", "date")
    return schemas.validate("fx_rates", rates)


def attach_rate(frame: pl.DataFrame, *, day: str, currency: str, rates: pl.DataFrame, base_currency: str,
                rate_col: str, date_col: str) -> pl.DataFrame:
    """Add `rate_col` and `date_col` (the rate's day) for each row's `currency` on `day`, as of that day."""
    idx = "__fx_row"
    left = frame.with_row_index(idx).with_columns(
        pl.col(day).alias("__fx_day"), pl.col(currency).alias("__fx_currency"))
    right = rates.select(
        pl.col("currency").alias("__fx_currency"),
        pl.col("date").alias("__fx_day"),
        pl.col("date").alias(date_col),
        pl.col("rate").alias(rate_col),
    ).filter(pl.col("__fx_currency") != base_currency).sort("__fx_currency", "__fx_day")
    joined = (
        left.sort("__fx_currency", "__fx_day", nulls_last=True)
        .join_asof(right, on="__fx_day", by="__fx_currency", strategy="backward", check_sortedness=False)
        .sort(idx)
    )
    is_base = pl.col("__fx_currency") == base_currency
    return joined.with_columns(
        pl.when(is_base).then(pl.lit(1, dtype=RATE)).otherwise(pl.col(rate_col)).alias(rate_col),
        pl.when(is_base).then(pl.col("__fx_day")).otherwise(pl.col(date_col)).alias(date_col),
    ).drop(idx, "__fx_day", "__fx_currency")
