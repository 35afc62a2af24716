"""Why a statement row is not among our conversions (a missing_ours row): from our
conversions, the refused postbacks (postback_issues) and the clicks we issued."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from pipeline.errors import PipelineError
from pipeline.reconciliation.outcomes import KEY
from pipeline.warehouse import Warehouse

if TYPE_CHECKING:  # the result's describe() calls explain_missing_ours: no import at run time
    from pipeline.reconciliation.result import ReconcileResult

# Why a statement row is not among our conversions, beside the reasons of postback_issues.
MISSING_OURS_REASONS = {
    "outside_period": "We have this conversion, but its day is outside the reconciled period: reconcile "
                      "a period that includes that day (a loaded statement's own dates are the default).",
    "conversion_of_another_partner": "We have this conversion, recorded for another partner (the owner of "
                                     "the click's offer): check that the statement and the partner match.",
    "other_transaction_id": "We have a conversion of this click under another transaction id: the "
                            "statement's id is not the one the postback sent as transaction_id.",
    "click_of_another_partner": "We issued this click, for another partner's offer, and no postback for it "
                                "reached us: check the click id in the statement.",
    "click_without_postback": "We issued this click but no postback for it ever reached us: ask the partner "
                              "to send (or resend) the postback, to the URL in their guide.",
    "never_received": "No click and no request with this click id ever reached us: ask the partner whether "
                      "the postback was sent, to which URL, and where the click id came from.",
}
NEVER_RECEIVED = ("never_received", MISSING_OURS_REASONS["never_received"])


def explain_missing_ours(result: ReconcileResult, wh: Warehouse | None = None) -> pl.DataFrame:
    """Why each missing_ours row is not among our conversions (`reason`, `detail`), first that holds:

    - outside_period: we have the conversion, for this partner, on a day outside the period
      (the detail names its day, on the result's date basis and time zone);
    - conversion_of_another_partner: we have the conversion, recorded for another partner;
    - the reason of a postback_issues row with this click id and transaction id (a refused
      postback: wrong key, unknown click id, macro...; the latest by log seq);
    - other_transaction_id: we have a conversion of this click under other transaction id(s);
    - the reason of the latest postback_issues row with this click id;
    - click_of_another_partner / click_without_postback: we issued the click (for another
      partner's offer / for theirs) and no postback with it reached us;
    - never_received: the log holds nothing with this click id.

    `wh` defaults to the warehouse the result was reconciled against.
    """
    wh = wh if wh is not None else result.warehouse
    if wh is None:
        raise PipelineError("explain_missing_ours needs the warehouse the statement was reconciled against")
    missing = result.rows.filter(pl.col("outcome") == "missing_ours").select(
        *KEY, "theirs_amount", "theirs_currency", "theirs_date")
    basis = "converted_at" if result.date_basis == "conversion" else "clicked_at"
    label = f"{result.date_basis} day"
    # only the click ids of the missing rows are looked up: the tables are scanned, never read whole
    ids = missing["click_id"].drop_nulls().unique().implode()
    conversions = wh.scan("conversions").filter(pl.col("click_id").is_in(ids)).select(
        *KEY, "partner_id", "offer_id",
        pl.col(basis).dt.convert_time_zone(result.tz).dt.date().cast(pl.String).fill_null("unknown").alias("day")
    ).collect()
    exact = (conversions.sort(pl.col("partner_id") != result.partner)
             .unique(KEY, keep="first", maintain_order=True)
             .select(*KEY, pl.col("partner_id").alias("_conv_partner"), pl.col("day").alias("_conv_day")))
    by_click = conversions.sort("day", *KEY).group_by("click_id").agg(
        pl.col("transaction_id").unique(maintain_order=True).head(3).str.join(", ").alias("_other_txns"),
        pl.len().alias("_other_count"), pl.col("partner_id").first().alias("_other_partner"),
        pl.col("day").first().alias("_other_day"))
    clicks = wh.scan("clicks").filter(pl.col("click_id").is_in(ids)).select(
        "click_id", pl.col("partner_id").alias("_click_partner"), pl.col("offer_id").alias("_click_offer"),
        pl.col("clicked_at").dt.convert_time_zone(result.tz).dt.date().cast(pl.String).alias("_clicked_day")
    ).collect()
    issues = wh.scan("postback_issues").filter(pl.col("click_id").is_in(ids)).select(
        "click_id", pl.coalesce("transaction_id", "click_id").alias("_issue_transaction_id"), "seq",
        "received_at", "route", "error", pl.col("reason").alias("_issue_reason"),
        pl.col("detail").alias("_issue_detail"), "nearest_click_id").collect()
    latest_issue = (missing.select(KEY).join(issues, on="click_id")
                    .with_columns((pl.col("_issue_transaction_id") == pl.col("transaction_id")).alias("_same_txn"))
                    .sort([*KEY, "_same_txn", "seq"]).group_by(KEY, maintain_order=True).last())
    joined = (missing.join(exact, on=KEY, how="left")
              .join(latest_issue.drop("_issue_transaction_id", "seq"), on=KEY, how="left")
              .join(by_click, on="click_id", how="left")
              .join(clicks.unique("click_id", keep="first"), on="click_id", how="left"))
    has_issue = pl.col("_issue_reason").is_not_null()
    reason = (
        pl.when(pl.col("_conv_partner") == result.partner).then(pl.lit("outside_period"))
        .when(pl.col("_conv_partner").is_not_null()).then(pl.lit("conversion_of_another_partner"))
        .when(has_issue & pl.col("_same_txn")).then(pl.col("_issue_reason"))
        .when(pl.col("_other_count").is_not_null()).then(pl.lit("other_transaction_id"))
        .when(has_issue).then(pl.col("_issue_reason"))
        .when(pl.col("_click_partner").is_not_null() & (pl.col("_click_partner") != result.partner))
        .then(pl.lit("click_of_another_partner"))
        .when(pl.col("_click_offer").is_not_null()).then(pl.lit("click_without_postback"))
        .otherwise(pl.lit("never_received")))
    text = pl.lit
    detail = (
        pl.when(pl.col("reason") == "outside_period").then(pl.concat_str(
            text(f"We have this conversion: its {label} ({result.tz}) is "), pl.col("_conv_day"),
            text(f", outside the reconciled period {result.period()}. Reconcile a period that includes "
                 "that day (a loaded statement's own dates are the default).")))
        .when(pl.col("reason") == "conversion_of_another_partner").then(pl.concat_str(
            text("We have this conversion, recorded for partner "), pl.col("_conv_partner"),
            text(f" (the owner of the click's offer), not {result.partner}; its {label} is "), pl.col("_conv_day"),
            text(". Check that the statement is this partner's.")))
        .when(pl.col("reason") == "other_transaction_id").then(pl.concat_str(
            text("We have "), pl.col("_other_count").cast(pl.String),
            text(" conversion(s) of this click under transaction id "), pl.col("_other_txns"),
            text(" (partner "), pl.col("_other_partner"), text(f", {label} "), pl.col("_other_day"),
            text("), not "), pl.col("transaction_id"),
            text(": the statement's id is not the one the postback sent as transaction_id; ask the partner which "
                 "id they send, or map the statement's matching column to transaction_id.")))
        .when(pl.col("reason") == "click_of_another_partner").then(pl.concat_str(
            text("We issued this click for partner "), pl.col("_click_partner"), text(", offer "),
            pl.col("_click_offer"), text(f", not {result.partner} (clicked "), pl.col("_clicked_day"),
            text("), and no postback with it reached us: check the click id in the statement.")))
        .when(pl.col("reason") == "click_without_postback").then(pl.concat_str(
            text("We issued this click (offer "), pl.col("_click_offer"), text(", clicked "),
            pl.col("_clicked_day"),
            text(") but no postback with it ever reached us: ask the partner to send (or resend) the postback, "
                 "to the URL in their guide.")))
        .when(pl.col("reason") == "never_received").then(text(NEVER_RECEIVED[1]))
        .otherwise(pl.col("_issue_detail")))
    from_issue = ~pl.col("reason").is_in(list(MISSING_OURS_REASONS))
    return (joined.with_columns(reason.alias("reason"))
            .with_columns(detail.alias("detail"),
                          *(pl.when(from_issue).then(pl.col(c)).alias(c)
                            for c in ("error", "nearest_click_id", "route")),
                          pl.when(from_issue).then(pl.col("received_at")).alias("last_attempt_at"))
            .select(*KEY, "theirs_amount", "theirs_currency", "theirs_date", "reason", "error", "detail",
                    "nearest_click_id", "last_attempt_at", "route").sort(KEY))
