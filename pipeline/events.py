"""The `clicks` and `postbacks` tables: staged log rows, selected and named for people.

Clicks are the log's `kind = "click"`, `result = "click"` records (a tracking link of
an inactive offer makes no click). Offer currency and revenue share come from the
click's snapshot of the offer terms; only a click without a snapshot falls back to the
current config (`terms_source` says which). Postbacks are every `kind = "postback"`
record, refused ones too; `result` is the answer's result or, on refusal, its error code.

A profile partner's postback (dialect `profile`) gets its status here, from its raw status
and the partner's `[partners.statuses]` in the config of this run (`status_for`): fixing a
mapping in config.toml and running the pipeline again corrects history. A reversal is
`rejected` whatever its raw status. A partner no longer configured (or no longer with a
profile) keeps the status the receiver wrote. The seed dialects' statuses are the receiver's,
which the same vocabulary made.
"""

from __future__ import annotations

import polars as pl

from pipeline.money import MONEY
from pipeline.schemas import polars_schema
from receiver.contract.config import Config
from receiver.contract.profiles import PROFILE_DIALECT, status_for


def _offer_terms(config: Config | None) -> pl.DataFrame:
    rows = []
    if config is not None:
        for offer in config.offers.values():
            share = offer.revenue_share
            rows.append((offer.id, offer.currency,
                         None if share.percent is None else str(share.percent),
                         None if share.fixed is None else str(share.fixed)))
    frame = pl.DataFrame(rows, schema={"offer_id": pl.String, "cfg_currency": pl.String,
                                       "cfg_percent": pl.String, "cfg_fixed": pl.String}, orient="row")
    return frame.with_columns(pl.col("cfg_percent").str.to_decimal(scale=8).cast(MONEY),
                              pl.col("cfg_fixed").str.to_decimal(scale=8).cast(MONEY))


def build_clicks(events: pl.DataFrame, config: Config | None) -> pl.DataFrame:
    """One row per click id (the first record by seq, should the log ever repeat one)."""
    raw = (events.filter((pl.col("kind") == "click") & (pl.col("result") == "click")
                         & pl.col("click_id").is_not_null())
           .sort("seq").unique("click_id", keep="first", maintain_order=True))
    has_snapshot = pl.col("offer_currency").is_not_null() | pl.col("revenue_share_percent").is_not_null() | \
        pl.col("revenue_share_fixed").is_not_null()
    joined = raw.join(_offer_terms(config), on="offer_id", how="left")
    clicks = joined.select(
        "click_id",
        pl.col("received_at").alias("clicked_at"),
        pl.col("source").fill_null(pl.when(pl.col("user_id").is_not_null()).then(pl.lit("earn"))
                                   .otherwise(pl.lit("link"))).alias("source"),
        "slug", "product_id", "offer_id", "partner_id", "affiliate_id", "user_id",
        pl.col("remote_addr").alias("ip"),
        "forwarded_for", "user_agent", "referer", "expires_at", "custom_data", "task_url", "redirect_url",
        pl.when(has_snapshot).then(pl.col("offer_currency")).otherwise(pl.col("cfg_currency"))
        .alias("offer_currency"),
        pl.when(has_snapshot).then(pl.col("revenue_share_percent")).otherwise(pl.col("cfg_percent"))
        .alias("revenue_share_percent"),
        pl.when(has_snapshot).then(pl.col("revenue_share_fixed")).otherwise(pl.col("cfg_fixed"))
        .alias("revenue_share_fixed"),
        pl.when(has_snapshot).then(pl.lit("snapshot"))
        .when(pl.col("cfg_currency").is_not_null()).then(pl.lit("config"))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("terms_source"),
        "event_id", "seq",
    )
    return clicks.sort("seq").cast(polars_schema("clicks"))  # type: ignore[arg-type]


def build_postbacks(events: pl.DataFrame, config: Config | None = None) -> pl.DataFrame:
    """One row per postback request, in log order (profile statuses mapped with `config`)."""
    columns = list(polars_schema("postbacks"))
    frame = events.filter(pl.col("kind") == "postback").with_columns(
        pl.coalesce("partner_id", "key_partner_id").alias("partner_id"),
        pl.coalesce("result", "error", pl.lit("unanswered")).alias("result"),
    )
    frame = map_profile_statuses(frame, config)
    return frame.select(columns).sort("seq").cast(polars_schema("postbacks"))  # type: ignore[arg-type]


def map_profile_statuses(postbacks: pl.DataFrame, config: Config | None) -> pl.DataFrame:
    """`status` of every profile postback from its `status_raw` and its partner's current mapping."""
    profile = (pl.col("dialect") == PROFILE_DIALECT).fill_null(False)
    pairs = postbacks.filter(profile).select("key_partner_id", "status_raw").unique()
    rows = []
    for partner_id, raw in pairs.iter_rows():
        partner = config.partners.get(partner_id) if config is not None and partner_id is not None else None
        if partner is not None and partner.profile is not None:
            rows.append((partner_id, raw, status_for(raw, partner.profile.statuses)))
    mapped = pl.DataFrame(rows, schema={"key_partner_id": pl.String, "status_raw": pl.String,
                                        "_mapped": pl.String}, orient="row")
    joined = postbacks.join(mapped, on=["key_partner_id", "status_raw"], how="left", nulls_equal=True)
    return joined.with_columns(
        pl.when(profile & pl.col("reversal").fill_null(False)).then(pl.lit("rejected"))
        .when(profile & pl.col("_mapped").is_not_null()).then(pl.col("_mapped"))
        .otherwise(pl.col("status")).alias("status"),
    ).drop("_mapped")
