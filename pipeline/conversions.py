"""Conversions: one row per (click_id, transaction_id), and the consistency check against the log.

A conversion is the postback record the receiver answered `recorded`; the later
records of its pair (answered `duplicate`) are counted in `duplicates`. When the
partner allowed status updates (the `status_updates` snapshot on the duplicate's own
record) a later postback may move the status forward only:

    pending -> approved | rejected,  approved -> rejected (a reversal)

Every other later status is ignored. Because the allowed moves only go forward in
the order pending < approved < rejected, the final status is the highest rank among
the recorded status and the allowed updates, whatever order those updates arrive in;
`status_history` lists the steps actually taken, in log order (seq).

A profile partner's status its mapping does not know is `unknown` (pipeline.events): a
conversion whose status is unknown does not count (not_counted_reason `unknown_status`),
ranks below pending (a later approved or rejected update of a partner with status updates
moves it), and an unknown update is never applied. A profile's reversal is a later
`rejected` postback of the conversion it takes back, applied like any update.

Amounts, commission and currency are those of the recorded postback (updates move
the status, not the money), but for one case: a recorded postback that sent no amount
(a pending one, before the platform knows the payout) takes the amount of the first
later postback of its pair that sends one, when the partner allows status updates,
with that postback's currency and commission where the recorded one sent none
(`amount_fills`). A later postback of the pair that sends a different amount,
currency or commission than these is a conflicting duplicate: the recorded values are
kept, its status step (if any) is applied as usual, and it is counted in
`conflicting_duplicates` and listed in postback_issues, so a reused transaction id
is never silently merged. `counts` is true only for an approved conversion of a
known, unexpired click with every needed fx rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from pipeline import fx
from pipeline.errors import InconsistentEvent
from pipeline.money import MONEY, mul, percent_of
from pipeline.schemas import polars_schema
from pipeline.surveys import with_campaigns, with_survey_ids
from receiver.contract.config import Config
from receiver.contract.params import UUID_PATTERN

KEY = ["click_id", "transaction_id"]
STATUS_RANK = {"unknown": -1, "pending": 0, "approved": 1, "rejected": 2, "test": 3}
UPDATE_STATUSES = ("approved", "rejected")


def with_pair_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with click_id and transaction_id as the receiver keys a pair
    (receiver.contract.params.pair_key): a UUID click id in any case is the lower-case click,
    and so is a transaction id that is the click id (the default when none was sent). The
    postbacks table keeps the ids as sent; conversions and their checks join by these."""
    raw = pl.col("click_id")
    if frame.is_empty() or not frame.select(raw.str.contains("[A-F]").any()).item():
        return frame  # the usual log: every id as we issued it, nothing to normalise
    canonical = pl.when(raw.str.contains(f"^{UUID_PATTERN}$")).then(raw.str.to_lowercase()).otherwise(raw)
    return frame.with_columns(
        pl.when(pl.col("transaction_id") == raw).then(canonical).otherwise(pl.col("transaction_id"))
        .alias("transaction_id"),
        canonical.alias("click_id"),
    )


CONSISTENCY_COLUMNS = ["seq", "event_id", "click_id", "transaction_id", "result", "segment", "line_no", "amount",
                       "commission", "status", "kind"]


def check_consistency(events: pl.DataFrame | pl.LazyFrame) -> list[InconsistentEvent]:
    """Every disagreement between the receiver's answers and what the conversions can be built from.

    Lazy input is read column-wise: only seq over all rows, then the few rows involved.
    """
    rows = events.lazy().select(CONSISTENCY_COLUMNS)
    pb = with_pair_keys(rows.filter((pl.col("kind") == "postback") & pl.col("result").is_in(["recorded", "duplicate"]))
                        .collect().sort("seq", maintain_order=True))
    problems: list[InconsistentEvent] = []

    def add(frame: pl.DataFrame, problem) -> None:
        for r in frame.iter_rows(named=True):
            text = problem(r) if callable(problem) else problem
            problems.append(InconsistentEvent(r["seq"], r["event_id"], r["click_id"], r["transaction_id"],
                                              r["result"], text, r["segment"], r["line_no"]))

    repeated = rows.select("seq").filter(pl.col("seq").is_duplicated()).collect()["seq"].unique()
    dup_seq = rows.filter(pl.col("seq").is_in(repeated.to_list())).collect().sort("seq", maintain_order=True)
    add(dup_seq, "its seq is not unique in the log")
    add(pb.filter(pl.col("click_id").is_null() | pl.col("transaction_id").is_null()),
        "an accepted postback without click_id or transaction_id")
    keyed = pb.filter(pl.col("click_id").is_not_null() & pl.col("transaction_id").is_not_null())
    recorded = keyed.filter(pl.col("result") == "recorded").sort("seq")
    add(recorded.filter(pl.col("amount").is_null() | pl.col("commission").is_null() | pl.col("status").is_null()),
        "a recorded conversion without amount, commission or status")
    first = recorded.group_by(KEY).agg(pl.col("seq").min().alias("first_seq"))
    again = recorded.join(first, on=KEY).filter(pl.col("seq") != pl.col("first_seq"))
    add(again, lambda r: f"a second `recorded` answer for a pair already recorded at seq {r['first_seq']}")
    dupes = keyed.filter(pl.col("result") == "duplicate").join(first, on=KEY, how="left")
    add(dupes.filter(pl.col("first_seq").is_null()), "a `duplicate` answer for a pair that was never recorded")
    add(dupes.filter(pl.col("first_seq") > pl.col("seq")),
        lambda r: f"a `duplicate` answer before the pair was recorded (at seq {r['first_seq']})")
    return sorted(problems, key=lambda p: (p.seq or 0, p.problem))


def status_steps(postbacks: pl.DataFrame) -> pl.DataFrame:
    """Every recorded and duplicate postback of each pair in seq order, with what it did.

    `before` is the rank of the pair's status just before the row; `applied` marks
    a duplicate that moved the status forward; `updates_on` is the partner setting
    that applied to the row (the row's own snapshot, else the recorded one's).
    """
    postbacks = with_pair_keys(postbacks)
    recorded = postbacks.filter(pl.col("result") == "recorded")
    rec_updates = recorded.select(*KEY, pl.col("status_updates").alias("rec_status_updates"))
    cols = [*KEY, "seq", "event_id", "received_at", "status", "status_raw"]
    rows = pl.concat([
        recorded.select(*cols, pl.lit(True).alias("is_recorded"), pl.col("status_updates").alias("updates_on")),
        postbacks.filter(pl.col("result") == "duplicate").join(rec_updates, on=KEY, how="inner").select(
            *cols, pl.lit(False).alias("is_recorded"),
            pl.coalesce("status_updates", "rec_status_updates").alias("updates_on")),
    ]).with_columns(pl.col("updates_on").fill_null(False))
    rank = pl.col("status").replace_strict(STATUS_RANK, default=2, return_dtype=pl.Int8)
    moves = pl.col("is_recorded") | (pl.col("updates_on") & pl.col("status").is_in(UPDATE_STATUSES))
    rows = rows.with_columns(rank.alias("rank")).with_columns(
        pl.when(moves).then(pl.col("rank")).otherwise(pl.lit(STATUS_RANK["unknown"], dtype=pl.Int8))
        .alias("_eligible_rank"))
    # Most pairs are a recorded postback alone: nothing before it, nothing applied. Only the
    # pairs with duplicates need the window (and its sort within each pair).
    repeated = rows.filter(~pl.col("is_recorded")).select(KEY).unique()
    alone = rows.join(repeated, on=KEY, how="anti").with_columns(pl.lit(None, dtype=pl.Int8).alias("before"))
    steps = rows.join(repeated, on=KEY, how="semi").with_columns(
        pl.col("_eligible_rank").cum_max().shift(1).over(KEY, order_by="seq").alias("before"))
    rows = pl.concat([alone, steps]).with_columns(
        (~pl.col("is_recorded") & moves & (pl.col("rank") > pl.col("before"))).fill_null(False).alias("applied"))
    return rows.drop("_eligible_rank").sort([*KEY, "seq"])


def money_text(value: Decimal | None) -> str:
    """An amount as people read it: at least two places, no trailing zeros beyond them."""
    if value is None:
        return "?"
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _conflict_detail(row: dict) -> str:
    """One sentence naming both values, for support and finance."""
    def said(amount: Decimal | None, currency: str | None, commission: Decimal | None) -> str:
        text = f"{money_text(amount)} {currency}"
        return text + (f" (commission {money_text(commission)})" if row["commission_conflict"] else "")

    recorded = said(row["rec_amount"], row["rec_currency"], row["rec_commission"])
    this = said(row["amount"] if row["amount_sent"] else row["rec_amount"],
                row["currency"] if row["currency_sent"] else row["rec_currency"],
                row["commission"])
    return (f"Transaction id reused with different values: recorded {recorded} at seq {row['rec_seq']}, "
            f"this one says {this}; the recorded values are kept. Ask the partner which is right; a "
            "separate conversion needs a distinct transaction_id.")


def amount_fills(postbacks: pl.DataFrame) -> pl.DataFrame:
    """The amount a pair's recorded postback lacked, from the first later postback of the pair
    that sent one, when the partner allows status updates (the later postback's own snapshot,
    else the recorded one's): a pending postback without payout, then the approval with it.

    Columns: click_id, transaction_id, fill_seq, fill_amount, fill_currency (the later
    postback's currency when it sent one and the recorded one did not, else null),
    fill_commission (likewise).
    """
    postbacks = with_pair_keys(postbacks)
    recorded = postbacks.filter((pl.col("result") == "recorded") & ~pl.col("amount_sent").fill_null(False)).select(
        *KEY, pl.col("status_updates").alias("rec_status_updates"),
        (pl.col("currency_source") == "param").fill_null(False).alias("rec_currency_sent"),
        pl.col("commission_sent").fill_null(False).alias("rec_commission_sent"))
    later = (postbacks.filter((pl.col("result") == "duplicate") & pl.col("amount_sent").fill_null(False))
             .join(recorded, on=KEY, how="inner")
             .filter(pl.coalesce("status_updates", "rec_status_updates").fill_null(False))
             .sort("seq").group_by(KEY, maintain_order=True).first())
    return later.select(
        *KEY, pl.col("seq").alias("fill_seq"), pl.col("amount").alias("fill_amount"),
        pl.when((pl.col("currency_source") == "param") & ~pl.col("rec_currency_sent")).then(pl.col("currency"))
        .otherwise(None).alias("fill_currency"),
        pl.when(pl.col("commission_sent").fill_null(False) & ~pl.col("rec_commission_sent"))
        .then(pl.col("commission")).otherwise(None).alias("fill_commission"))


def duplicate_conflicts(postbacks: pl.DataFrame, fills: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every `duplicate` postback whose sent amount, currency or commission differs from the recorded one
    (with the amount a later postback gave it: `amount_fills`).

    Only what the duplicate actually sent is compared (the receiver fills a missing
    amount with 0 and a missing currency with the offer's), so a bare status update
    never conflicts. Decimals compare by value: 10 equals 10.00.
    Columns: event_id, click_id, transaction_id, seq, conflict_detail.
    """
    fills = amount_fills(postbacks) if fills is None else fills
    postbacks = with_pair_keys(postbacks)
    recorded = postbacks.filter(pl.col("result") == "recorded").join(fills, on=KEY, how="left").select(
        *KEY, pl.col("seq").alias("rec_seq"), pl.coalesce("fill_amount", "amount").alias("rec_amount"),
        pl.coalesce("fill_currency", "currency").alias("rec_currency"),
        pl.coalesce("fill_commission", "commission").alias("rec_commission"))
    dupes = postbacks.filter(pl.col("result") == "duplicate").join(recorded, on=KEY, how="inner")
    dupes = dupes.with_columns(
        pl.col("amount_sent").fill_null(False),
        (pl.col("currency_source") == "param").fill_null(False).alias("currency_sent"),
        pl.col("commission_sent").fill_null(False),
    ).with_columns(
        (pl.col("amount_sent") & (pl.col("amount") != pl.col("rec_amount"))).fill_null(False)
        .alias("amount_conflict"),
        (pl.col("currency_sent") & (pl.col("currency") != pl.col("rec_currency"))).fill_null(False)
        .alias("currency_conflict"),
        (pl.col("commission_sent") & (pl.col("commission") != pl.col("rec_commission"))).fill_null(False)
        .alias("commission_conflict"),
    )
    conflicting = dupes.filter(pl.col("amount_conflict") | pl.col("currency_conflict")
                               | pl.col("commission_conflict")).sort("seq")
    details = [_conflict_detail(row) for row in conflicting.iter_rows(named=True)]
    return conflicting.select("event_id", *KEY, "seq").with_columns(
        pl.Series("conflict_detail", details, dtype=pl.String))


@dataclass(frozen=True)
class PairHistory:
    """`status_steps` and `duplicate_conflicts` of one postbacks table. The conversions and
    the issues both need them; a run computes them once and passes them to both."""

    steps: pl.DataFrame
    conflicts: pl.DataFrame
    fills: pl.DataFrame  # amount_fills


def pair_history(postbacks: pl.DataFrame) -> PairHistory:
    fills = amount_fills(postbacks)
    return PairHistory(status_steps(postbacks), duplicate_conflicts(postbacks, fills), fills)


def fold_status(postbacks: pl.DataFrame, history: PairHistory | None = None) -> pl.DataFrame:
    """Per pair: status, status_raw, status_history, status_updated_at, last event, updates, duplicates,
    conflicting duplicates."""
    history = history or pair_history(postbacks)
    steps = history.steps
    kept = steps.filter(pl.col("is_recorded") | pl.col("applied"))
    folded = kept.group_by(KEY).agg(
        pl.col("status").sort_by("seq").alias("status_history"),
        pl.col("status").sort_by("seq").last().alias("status"),
        pl.col("status_raw").sort_by("seq").last().alias("status_raw"),
        pl.col("received_at").sort_by("seq").last().alias("status_updated_at"),
        pl.col("event_id").sort_by("seq").last().alias("last_event_id"),
        pl.col("seq").max().alias("last_seq"),
        (pl.len() - 1).cast(pl.Int64).alias("updates_applied"),
    )
    counts = steps.filter(~pl.col("is_recorded")).group_by(KEY).agg(pl.len().cast(pl.Int64).alias("duplicates"))
    conflicts = history.conflicts.group_by(KEY).agg(
        pl.len().cast(pl.Int64).alias("conflicting_duplicates"))
    return (folded.join(counts, on=KEY, how="left").join(conflicts, on=KEY, how="left")
            .with_columns(pl.col("duplicates").fill_null(0), pl.col("conflicting_duplicates").fill_null(0)))


def not_counted_reason(status: pl.Expr) -> pl.Expr:
    """Why a conversion with `status` would not count (null when it counts), over the columns of
    the conversions table. The table applies it to the current status; the forwarder
    (pipeline.forwarding) to `approved`, to know whether an approval that was later reversed
    counted while it stood. A known click has a clicked_at; a share with a currency but no
    base amount lacks its fx rate."""
    expired = pl.col("expires_at").is_not_null() & (pl.col("converted_at") > pl.col("expires_at"))
    return (pl.when(status == "unknown").then(pl.lit("unknown_status"))
            .when(status != "approved").then(status)
            .when(pl.col("clicked_at").is_null()).then(pl.lit("click_unknown"))
            .when(expired).then(pl.lit("click_expired"))
            .when(pl.col("affiliate_payout_source").is_null()).then(pl.lit("no_offer_terms"))
            .when(pl.col("fx_rate").is_null() | pl.col("affiliate_payout_base").is_null())
            .then(pl.lit("fx_missing"))
            .otherwise(pl.lit(None, dtype=pl.String)))


def build_conversions(postbacks: pl.DataFrame, clicks: pl.DataFrame, rates: pl.DataFrame,
                      base_currency: str, history: PairHistory | None = None,
                      config: Config | None = None) -> pl.DataFrame:
    """The conversions table (see the module docstring for the rules; survey ids are mapped to
    campaigns with `config`'s [[survey_campaigns]], pipeline.surveys)."""
    recorded = with_survey_ids(with_pair_keys(postbacks.filter(pl.col("result") == "recorded"))).select(
        *KEY, pl.col("received_at").alias("converted_at"), "amount", "commission", "commission_sent", "survey_id",
        pl.col("currency").alias("pb_currency"), pl.col("partner_id").alias("pb_partner_id"),
        pl.col("offer_id").alias("pb_offer_id"), pl.col("affiliate_id").alias("pb_affiliate_id"),
        pl.col("user_id").alias("pb_user_id"), pl.col("product_id").alias("pb_product_id"),
        pl.col("click_source").alias("pb_click_source"), "dialect", "event_id", "seq",
    )
    history = history or pair_history(postbacks)
    recorded = recorded.join(history.fills, on=KEY, how="left").with_columns(
        pl.coalesce("fill_amount", "amount").alias("amount"),
        pl.coalesce("fill_commission", "commission").alias("commission"),
        (pl.col("commission_sent") | pl.col("fill_commission").is_not_null()).alias("commission_sent"),
        pl.coalesce("fill_currency", "pb_currency").alias("pb_currency"),
    ).drop("fill_seq", "fill_amount", "fill_currency", "fill_commission")
    folded = fold_status(postbacks, history)
    click_cols = clicks.select(
        "click_id", "clicked_at", "expires_at", pl.col("source").alias("click_source"), "partner_id", "offer_id",
        "affiliate_id", "user_id", "product_id", "offer_currency", "revenue_share_percent", "revenue_share_fixed",
        pl.lit(True).alias("click_known"),
    )
    conv = recorded.join(folded, on=KEY, how="left").join(click_cols, on="click_id", how="left")
    conv = conv.with_columns(
        pl.col("click_known").fill_null(False),
        pl.coalesce("partner_id", "pb_partner_id").alias("partner_id"),
        pl.coalesce("offer_id", "pb_offer_id").alias("offer_id"),
        pl.coalesce("affiliate_id", "pb_affiliate_id").alias("affiliate_id"),
        pl.coalesce("user_id", "pb_user_id").alias("user_id"),
        pl.coalesce("product_id", "pb_product_id").alias("product_id"),
        pl.coalesce("click_source", "pb_click_source").alias("click_source"),
        pl.coalesce("pb_currency", "offer_currency", pl.lit(base_currency)).alias("currency"),
        pl.coalesce("commission_sent", pl.col("commission") > 0).alias("commission_sent"),
        pl.col("converted_at").dt.date().alias("day"),
    )
    conv = with_campaigns(conv, config)
    conv = fx.attach_rate(conv, day="day", currency="currency", rates=rates, base_currency=base_currency,
                          rate_col="fx_rate", date_col="fx_date")
    payout_source = (pl.when(pl.col("commission_sent")).then(pl.lit("commission"))
                     .when(pl.col("revenue_share_percent").is_not_null()).then(pl.lit("percent"))
                     .when(pl.col("revenue_share_fixed").is_not_null()).then(pl.lit("fixed"))
                     .otherwise(pl.lit(None, dtype=pl.String)))
    conv = conv.with_columns(payout_source.alias("affiliate_payout_source"))
    src = pl.col("affiliate_payout_source")
    conv = conv.with_columns(
        pl.when(src == "commission").then(pl.col("commission"))
        .when(src == "percent").then(percent_of(pl.col("amount"), pl.col("revenue_share_percent")))
        .when(src == "fixed").then(pl.col("revenue_share_fixed"))
        .otherwise(pl.lit(None, dtype=MONEY)).alias("affiliate_payout"),
        pl.when(src == "fixed").then(pl.coalesce("offer_currency", pl.lit(base_currency)))
        .when(src.is_not_null()).then(pl.col("currency"))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("affiliate_payout_currency"),
        mul(pl.col("amount"), pl.col("fx_rate")).alias("amount_base"),
        mul(pl.col("commission"), pl.col("fx_rate")).alias("commission_base"),
    )
    conv = fx.attach_rate(conv, day="day", currency="affiliate_payout_currency", rates=rates,
                          base_currency=base_currency, rate_col="payout_fx_rate", date_col="payout_fx_date")
    conv = conv.with_columns(mul(pl.col("affiliate_payout"), pl.col("payout_fx_rate")).alias("affiliate_payout_base"))
    conv = conv.with_columns(not_counted_reason(pl.col("status")).alias("not_counted_reason")).with_columns(
        pl.col("not_counted_reason").is_null().alias("counts"),
        pl.lit(base_currency).alias("base_currency"),
    )
    schema = polars_schema("conversions")
    return conv.select(list(schema)).sort("seq").cast(schema)  # type: ignore[arg-type]
