"""Earnings: per UTC day of conversion, partner, offer and affiliate (links) or user (earn).

Only counted conversions add to `counted`, `amount_base`, `affiliate_payout_base` and
`margin_base` (= amount_base - affiliate_payout_base, the network's share); the
pending, rejected and approved-but-not-counted conversions are counted beside them.
All money is in the base currency, exact, summed from 8-place values (no rounding).
"""

from __future__ import annotations

import polars as pl

from pipeline.money import MONEY
from pipeline.schemas import polars_schema

GROUP = ["day", "partner_id", "offer_id", "affiliate_id", "user_id", "base_currency"]


def build_earnings(conversions: pl.DataFrame) -> pl.DataFrame:
    counted = pl.col("counts")
    zero = pl.lit(0, dtype=MONEY)
    frame = conversions.with_columns(pl.col("converted_at").dt.date().alias("day")).group_by(GROUP).agg(
        counted.sum().cast(pl.Int64).alias("counted"),
        pl.when(counted).then(pl.col("amount_base")).otherwise(zero).sum().cast(MONEY).alias("amount_base"),
        pl.when(counted).then(pl.col("affiliate_payout_base")).otherwise(zero).sum().cast(MONEY)
        .alias("affiliate_payout_base"),
        (pl.col("status") == "pending").sum().cast(pl.Int64).alias("pending"),
        (pl.col("status") == "rejected").sum().cast(pl.Int64).alias("rejected"),
        ((pl.col("status") == "approved") & ~counted).sum().cast(pl.Int64).alias("approved_not_counted"),
    ).with_columns((pl.col("amount_base") - pl.col("affiliate_payout_base")).cast(MONEY).alias("margin_base"))
    schema = polars_schema("earnings")
    return frame.select(list(schema)).sort(GROUP, nulls_last=True).cast(schema)  # type: ignore[arg-type]
