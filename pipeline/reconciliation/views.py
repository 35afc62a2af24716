"""Views of a reconciliation for the notebook and describe(): the rows left out of the totals
for want of an fx rate, and the totals per day and per status, ours and theirs side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from pipeline.reconciliation.outcomes import KEY, outcome_rank

if TYPE_CHECKING:  # the result's describe() calls without_fx_rate: no import at run time
    from pipeline.reconciliation.result import ReconcileResult


def without_fx_rate(result: ReconcileResult) -> pl.DataFrame:
    """Per outcome and currency, the rows left out of the base-currency totals: an amount (ours or
    theirs) in that currency with no fx rate for its day. Columns outcome, currency, rows."""
    rows = result.rows
    sides = [rows.filter(pl.col(f"{side}_amount").is_not_null() & pl.col(f"{side}_amount_base").is_null())
             .select(*KEY, "outcome", pl.col(f"{side}_currency").alias("currency")) for side in ("ours", "theirs")]
    return (pl.concat(sides).unique().group_by("outcome", "currency").agg(pl.len().cast(pl.Int64).alias("rows"))
            .sort(outcome_rank(), "currency", nulls_last=True))


def daily_totals(result: ReconcileResult) -> pl.DataFrame:
    """Count and base-currency amount per day, ours and theirs side by side (long form: `side`).

    Our day is the reconciliation's day of the conversion; theirs is the statement's date,
    else ours. A day where the sides part is where a gap opened.
    """
    ours = (result.rows.filter(pl.col("ours_amount").is_not_null())
            .group_by(pl.col("ours_day").alias("day")).agg(
                pl.len().cast(pl.Int64).alias("count"), pl.col("ours_amount_base").sum().alias("amount_base"))
            .with_columns(pl.lit("ours").alias("side")))
    theirs = (result.rows.filter(pl.col("theirs_amount").is_not_null())
              .group_by(pl.coalesce("theirs_date", "ours_day").alias("day")).agg(
                  pl.len().cast(pl.Int64).alias("count"), pl.col("theirs_amount_base").sum().alias("amount_base"))
              .with_columns(pl.lit("theirs").alias("side")))
    return pl.concat([ours, theirs]).select("day", "side", "count", "amount_base").sort("day", "side")


def totals_by_status(result: ReconcileResult) -> pl.DataFrame:
    """Ours and theirs side by side per (normalised) status: count and base-currency amount."""
    ours = (result.rows.filter(pl.col("ours_amount").is_not_null())
            .group_by(pl.col("ours_status").alias("status")).agg(
                pl.len().cast(pl.Int64).alias("ours_count"), pl.col("ours_amount_base").sum().alias("ours_amount_base")))
    theirs = (result.rows.filter(pl.col("theirs_amount").is_not_null())
              .group_by(pl.col("theirs_status").alias("status")).agg(
                  pl.len().cast(pl.Int64).alias("theirs_count"),
                  pl.col("theirs_amount_base").sum().alias("theirs_amount_base")))
    both = ours.join(theirs, on="status", how="full", coalesce=True).with_columns(
        pl.col("ours_count", "theirs_count").fill_null(0))
    return both.select("status", "ours_count", "theirs_count", "ours_amount_base", "theirs_amount_base").sort(
        "status", nulls_last=True)
