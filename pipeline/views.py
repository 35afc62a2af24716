"""Ready-made views over a Warehouse, for the notebooks and for Jupyter users alike.

Each is a plain function of a `Warehouse` returning a Polars DataFrame (aggregated from the
tables scanned lazily: a view never holds a whole table), so a notebook
cell only presents, and the definitions (what a conversion rate or an EPC is) live in
one place:

- conversion_rate = counted conversions / clicks
- epc (earnings per click) = affiliate and user payouts / clicks, in base currency
- revenue = counted amount_base; margin = revenue - payouts

Days are UTC calendar days; money is in the warehouse's base currency.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pipeline.warehouse import Warehouse

GROUPINGS = {"day", "offer_id", "affiliate_id", "partner_id"}


def kpis(wh: Warehouse, by: Sequence[str] = ("day",)) -> pl.DataFrame:
    """Clicks, conversions, conversion rate, EPC, revenue, payouts and margin per group.

    `by` is any of day, partner_id, offer_id, affiliate_id. Clicks are grouped by the
    day they were made, conversions by the day they converted.
    """
    by = list(by)
    unknown = set(by) - GROUPINGS
    if unknown:
        raise ValueError(f"kpis can group by {sorted(GROUPINGS)}, not {sorted(unknown)}")
    clicks = (wh.scan("clicks").with_columns(pl.col("clicked_at").dt.date().alias("day"))
              .group_by(by).agg(pl.len().cast(pl.Int64).alias("clicks")))
    conv = wh.scan("conversions").with_columns(pl.col("converted_at").dt.date().alias("day"))
    counted = conv.filter(pl.col("counts"))
    money = counted.group_by(by).agg(
        pl.len().cast(pl.Int64).alias("conversions"),
        pl.col("amount_base").sum().alias("revenue"),
        pl.col("affiliate_payout_base").sum().alias("payouts"),
    )
    statuses = conv.group_by(by).agg(
        (pl.col("status") == "pending").sum().cast(pl.Int64).alias("pending"),
        (pl.col("status") == "rejected").sum().cast(pl.Int64).alias("rejected"),
    )
    table = (clicks.join(money, on=by, how="full", coalesce=True)
             .join(statuses, on=by, how="full", coalesce=True))
    zero = pl.lit(0, dtype=pl.Int64)
    table = table.with_columns(
        pl.col("clicks").fill_null(zero), pl.col("conversions").fill_null(zero),
        pl.col("pending").fill_null(zero), pl.col("rejected").fill_null(zero),
        pl.col("revenue").fill_null(0), pl.col("payouts").fill_null(0),
    ).with_columns((pl.col("revenue") - pl.col("payouts")).alias("margin"))
    per_click = pl.when(pl.col("clicks") > 0)
    table = table.with_columns(
        per_click.then(pl.col("conversions") / pl.col("clicks")).round(4).alias("conversion_rate"),
        per_click.then(pl.col("payouts").cast(pl.Float64) / pl.col("clicks")).round(4).alias("epc"),
    )
    columns = [*by, "clicks", "conversions", "conversion_rate", "epc", "revenue", "payouts", "margin",
               "pending", "rejected"]
    return table.select(columns).sort(by, nulls_last=True).collect()


def status_funnel(wh: Warehouse) -> pl.DataFrame:
    """Conversions by status (approved, pending, rejected, unknown), and how many approved ones count."""
    conv = wh.scan("conversions")
    order = {"approved": 0, "pending": 1, "rejected": 2, "unknown": 3}
    table = conv.group_by("status").agg(
        pl.len().cast(pl.Int64).alias("conversions"),
        pl.col("counts").sum().cast(pl.Int64).alias("counted"),
        pl.col("amount_base").sum().alias("amount_base"),
    )
    return table.sort(pl.col("status").replace_strict(order, default=9, return_dtype=pl.Int8)).collect()


def currency_mix(wh: Warehouse) -> pl.DataFrame:
    """Conversions per original currency: count, amount in it, amount in base currency, and
    how many have no rate (fx_missing), so a missing rate is seen, never summed as zero."""
    return (wh.scan("conversions").group_by("currency").agg(
        pl.len().cast(pl.Int64).alias("conversions"),
        pl.col("amount").sum().alias("amount"),
        # null, not 0, when no conversion of the currency has a rate
        pl.when(pl.col("amount_base").is_not_null().any()).then(pl.col("amount_base").sum())
        .alias("amount_base"),
        pl.col("fx_rate").is_null().sum().cast(pl.Int64).alias("without_rate"),
    ).sort("conversions", descending=True).collect())


def issues_by_partner(wh: Warehouse, top: int | None = None) -> pl.DataFrame:
    """Postbacks that did not record a conversion, per partner and reason, most first.

    Issues with no known partner (an unknown click and no key) are grouped as partner null.
    """
    table = (wh.scan("postback_issues").group_by("partner_id", "reason")
             .agg(pl.len().cast(pl.Int64).alias("issues"))
             .sort(["issues", "partner_id", "reason"], descending=[True, False, False], nulls_last=True).collect())
    if top is not None:
        partners = (table.group_by("partner_id").agg(pl.col("issues").sum())
                    .sort("issues", descending=True).head(top)["partner_id"])
        table = table.filter(pl.col("partner_id").is_in(partners.to_list()) | (
            pl.col("partner_id").is_null() & partners.is_null().any()))
    return table


DELIVERY_STATE_ORDER = {"delivered": 0, "pending": 1, "failed": 2, "exhausted": 3, "stopped": 4}


def deliveries_by_state(wh: Warehouse) -> pl.DataFrame:
    """What the forwarder told publishers: deliveries per affiliate and state (delivered first),
    their attempts, and net points of their approvals and reversals (a pending delivery's points
    are a preview, not counted; null for a publisher without points_per_unit)."""
    from pipeline.schemas import empty

    deliveries = wh.tables.get("deliveries")
    if deliveries is None:
        deliveries = empty("deliveries")
    table = deliveries.group_by("affiliate", "state").agg(
        pl.len().cast(pl.Int64).alias("deliveries"),
        pl.col("attempts").sum().cast(pl.Int64).alias("attempts"),
        pl.when(pl.col("points").is_not_null().any())
        .then(pl.col("points").filter(pl.col("event").is_in(["approved", "reversed"])).sum())
        .cast(pl.Int64).alias("points"),
        pl.col("planned_at").max().alias("last_planned_at"),
    )
    order = pl.col("state").replace_strict(DELIVERY_STATE_ORDER, default=9, return_dtype=pl.Int8)
    return table.sort(["affiliate", order]).select("affiliate", "state", "deliveries", "attempts", "points",
                                                   "last_planned_at")
