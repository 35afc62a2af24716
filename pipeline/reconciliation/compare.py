"""The comparison: a partner's statement against our conversions, one row per (click_id, transaction_id).

The statement is read as statement.py says (its columns mapped or guessed, its statuses
normalised). Our side is the partner's conversions whose day, on the `date_basis`
("conversion": converted_at, or "click": clicked_at) in time zone `tz`, lies in [start, end]. When
start/end are not given they come from the statement's date column, if it has one.

Base-currency amounts use the rate of our conversion's UTC day, else the statement
row's date, else the period's end, else the latest rate. Totals sum what could be
converted and count the rest in `rows_without_fx_rate` (never a silent zero).

Outcomes, in the order they are decided: missing_ours (only in the statement),
missing_theirs (only ours), status_mismatch (normalised statuses differ), currency_mismatch,
amount_mismatch (amounts differ after rounding both, half-to-even, to cents), else matched.
`mismatches` lists every difference of a row, not only the first.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from pipeline import fx
from pipeline.errors import (
    PipelineError,
    StatementError,
    UnknownPartnerError,
    WarehouseNotFoundError,
)
from pipeline.money import MONEY, mul, to_cents
from pipeline.reconciliation.outcomes import KEY, OUTCOMES, outcome_rank
from pipeline.reconciliation.result import ReconcileResult
from pipeline.reconciliation.statement import statement_columns, statement_frame, statement_text
from pipeline.warehouse import Warehouse, load
from receiver.contract.datadir import DataDir

DATE_BASES = ("conversion", "click")
LATEST = date(9999, 12, 31)  # a statement row without any date converts at the latest rate


def _day(value: date | str | None, what: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise StatementError(f"{what} must be a date YYYY-MM-DD, got {value!r}") from None


def _warehouse(data: str | os.PathLike[str] | Warehouse) -> tuple[Warehouse, Path | None]:
    if isinstance(data, Warehouse):
        return data, data.directory.parent if data.directory else None
    try:
        return load(data), Path(data)
    except WarehouseNotFoundError:
        from pipeline.runner import derive

        tables, _ = derive(data, use_cache=False)  # no warehouse yet: derive in memory, write nothing
        return Warehouse(tables), Path(data)


def reconcile(
    data: str | os.PathLike[str] | Warehouse,
    *,
    partner: str,
    statement: str | os.PathLike[str] | pl.DataFrame,
    columns: dict[str, str] | None = None,
    date_basis: str = "conversion",
    tz: str = "UTC",
    start: date | str | None = None,
    end: date | str | None = None,
) -> ReconcileResult:
    """Compare `partner`'s statement with our conversions (see the module docstring)."""
    if date_basis not in DATE_BASES:
        raise PipelineError(f"date_basis must be one of {', '.join(DATE_BASES)}, got {date_basis!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise PipelineError(f"unknown time zone {tz!r}; use an IANA name such as UTC or Europe/Berlin") from None
    wh, data_dir = _warehouse(data)
    known = set(wh.scan("conversions").select(pl.col("partner_id").drop_nulls().unique()).collect()
                .to_series().to_list())
    if data_dir is not None and DataDir(data_dir).config_path.exists():
        from pipeline.runner import load_pipeline_config

        known |= set(load_pipeline_config(data_dir).partners)
    if partner not in known:
        raise UnknownPartnerError(f"unknown partner {partner!r}; known partners: {', '.join(sorted(known))}")
    name, raw = statement_text(statement)
    mapping = statement_columns(raw.columns, columns)
    theirs = statement_frame(name, raw, mapping)
    start, end = _day(start, "start"), _day(end, "end")
    if start is None and end is None and theirs["date"].null_count() < theirs.height:
        start, end = theirs["date"].min(), theirs["date"].max()
    base = wh.base_currency
    basis = "converted_at" if date_basis == "conversion" else "clicked_at"
    # one partner's conversions, read lazily: never the whole table (issue 13)
    ours = wh.scan("conversions").filter(pl.col("partner_id") == partner).collect().with_columns(
        pl.col(basis).dt.convert_time_zone(tz).dt.date().alias("ours_day"))
    in_period = pl.lit(True)
    if start is not None:
        in_period = in_period & (pl.col("ours_day") >= start)
    if end is not None:
        in_period = in_period & (pl.col("ours_day") <= end)
    ours = ours.filter(in_period)
    ours = ours.select(*KEY, pl.lit(True).alias("in_ours"), pl.col("status").alias("ours_status"),
                       pl.col("amount").alias("ours_amount"), pl.col("currency").alias("ours_currency"),
                       pl.col("amount_base").alias("ours_amount_base"), "ours_day", "converted_at",
                       "clicked_at", pl.col("counts").alias("ours_counts"))
    theirs = theirs.select(*KEY, pl.lit(True).alias("in_theirs"), pl.col("status").alias("theirs_status"),
                           pl.col("status_raw").alias("theirs_status_raw"), pl.col("amount").alias("theirs_amount"),
                           pl.col("currency").alias("theirs_currency"), pl.col("date").alias("theirs_date"),
                           "statement_line")
    rows = ours.join(theirs, on=KEY, how="full", coalesce=True).with_columns(
        pl.col("in_ours").fill_null(False), pl.col("in_theirs").fill_null(False),
        pl.coalesce(pl.col("converted_at").dt.date(), "theirs_date", pl.lit(end or LATEST, dtype=pl.Date))
        .alias("_fx_day"))
    rows = fx.attach_rate(rows, day="_fx_day", currency="theirs_currency", rates=wh.fx_rates, base_currency=base,
                          rate_col="_theirs_rate", date_col="_theirs_rate_date")
    rows = rows.with_columns(mul(pl.col("theirs_amount"), pl.col("_theirs_rate")).alias("theirs_amount_base"),
                             (to_cents(pl.col("theirs_amount")) - to_cents(pl.col("ours_amount")))
                             .cast(pl.Decimal(38, 2)).alias("amount_difference"))
    both = pl.col("in_ours") & pl.col("in_theirs")
    status_diff = both & (pl.col("ours_status") != pl.col("theirs_status"))
    currency_diff = both & pl.col("ours_currency").ne_missing(pl.col("theirs_currency"))
    amount_diff = both & to_cents(pl.col("ours_amount")).ne_missing(to_cents(pl.col("theirs_amount")))
    rows = rows.with_columns(
        pl.when(~pl.col("in_ours")).then(pl.lit("missing_ours"))
        .when(~pl.col("in_theirs")).then(pl.lit("missing_theirs"))
        .when(status_diff).then(pl.lit("status_mismatch"))
        .when(currency_diff).then(pl.lit("currency_mismatch"))
        .when(amount_diff).then(pl.lit("amount_mismatch"))
        .otherwise(pl.lit("matched")).alias("outcome"),
        pl.concat_list(
            pl.when(status_diff).then(pl.lit("status")),
            pl.when(currency_diff).then(pl.lit("currency")),
            pl.when(amount_diff).then(pl.lit("amount")),
        ).list.drop_nulls().list.join(",").alias("mismatches"),
    )
    rows = rows.select(
        *KEY, "outcome", "mismatches", "ours_status", "theirs_status", "theirs_status_raw", "ours_amount",
        "theirs_amount", "amount_difference", "ours_currency", "theirs_currency", "ours_amount_base",
        "theirs_amount_base", "ours_day", "theirs_date", "converted_at", "clicked_at", "ours_counts",
        "statement_line",
    ).sort(KEY)
    totals, summary = _totals(rows)
    read = {ours: theirs for ours, theirs in mapping.items() if theirs != ours and theirs in raw.columns}
    return ReconcileResult(partner, date_basis, tz, start, end, base, rows, totals, summary, read, wh)


def _totals(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    zero = pl.lit(0, dtype=MONEY)
    sums = [
        pl.len().cast(pl.Int64).alias("rows"),
        pl.col("ours_amount").fill_null(zero).sum().cast(MONEY).alias("ours_amount"),
        pl.col("theirs_amount").fill_null(zero).sum().cast(MONEY).alias("theirs_amount"),
        pl.col("ours_amount_base").fill_null(zero).sum().cast(MONEY).alias("ours_amount_base"),
        pl.col("theirs_amount_base").fill_null(zero).sum().cast(MONEY).alias("theirs_amount_base"),
        ((pl.col("ours_amount").is_not_null() & pl.col("ours_amount_base").is_null())
         | (pl.col("theirs_amount").is_not_null() & pl.col("theirs_amount_base").is_null()))
        .sum().cast(pl.Int64).alias("rows_without_fx_rate"),
    ]
    totals = (rows.with_columns(pl.coalesce("ours_currency", "theirs_currency").alias("currency"))
              .group_by("outcome", "currency").agg(*sums).sort(outcome_rank(), "currency", nulls_last=True))
    per_outcome = rows.group_by("outcome").agg(*sums[:1], *sums[3:])
    summary = (pl.DataFrame({"outcome": list(OUTCOMES)}).join(per_outcome, on="outcome", how="left")
               .with_columns(pl.col("rows").fill_null(0), pl.col("rows_without_fx_rate").fill_null(0),
                             pl.col("ours_amount_base").fill_null(zero),
                             pl.col("theirs_amount_base").fill_null(zero))
               .with_columns((pl.col("theirs_amount_base") - pl.col("ours_amount_base")).cast(MONEY)
                             .alias("difference_base"))
               .sort(outcome_rank()))
    return totals, summary
