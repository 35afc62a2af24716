"""Reconciliation: a partner's statement against our conversions, one row per (click_id, transaction_id).

A statement is a CSV (or a DataFrame) with click_id, transaction_id (optional: it
defaults to the click id, as on the receiver), status, amount, currency and an
optional date; `columns` maps our names to the file's (`{"amount": "Payout"}`).
Our side is the partner's conversions whose day, on the `date_basis` ("conversion":
converted_at, or "click": clicked_at) in time zone `tz`, lies in [start, end]. When
start/end are not given they come from the statement's date column, if it has one.

Base-currency amounts use the rate of our conversion's UTC day, else the statement
row's date, else the period's end, else the latest rate. Totals sum what could be
converted and count the rest in `rows_without_fx_rate` (never a silent zero).

Outcomes, in the order they are decided: missing_ours (only in the statement),
missing_theirs (only ours), status_mismatch (normalised statuses differ: the
statement's status goes through the receiver's STATUS_MAP), currency_mismatch,
amount_mismatch (amounts differ after rounding both, half-to-even, to cents), else
matched. `mismatches` lists every difference of a row, not only the first.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
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
from pipeline.warehouse import Warehouse, load
from receiver.params import AMOUNT, CLICK_ID, STATUS_MAP, TRANSACTION_ID

OUTCOMES = ("matched", "missing_ours", "missing_theirs", "amount_mismatch", "status_mismatch",
            "currency_mismatch")
DEFAULT_COLUMNS = {"click_id": "click_id", "transaction_id": "transaction_id", "status": "status",
                   "amount": "amount", "currency": "currency", "date": "date"}
REQUIRED = ("click_id", "status", "amount", "currency")
DATE_BASES = ("conversion", "click")
KEY = ["click_id", "transaction_id"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ROWS_SHOWN = 20  # rows not matched that describe() lists
LATEST = date(9999, 12, 31)  # a statement row without any date converts at the latest rate
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# Statement headings that mean our columns, best first: ours, the receiver's parameter
# aliases (cid, payout, txn, order_id...), then usual export headings. See guess_columns.
COLUMN_ALIASES = {
    "click_id": (*CLICK_ID, "click id"),
    "transaction_id": (*TRANSACTION_ID, "transaction", "order", "order id", "conversion_id"),
    "status": ("status", "state", "conversion status"),
    "amount": (*AMOUNT, "revenue", "sale amount", "value"),
    "currency": ("currency", "currency code", "cur"),
    "date": ("date", "day", "conversion date", "converted_at", "created_at", "time"),
}


@dataclass
class ReconcileResult:
    """`.rows`: one row per key with its outcome; `.totals`: per outcome and currency; `.summary`: per outcome."""

    partner: str
    date_basis: str
    tz: str
    start: date | None
    end: date | None
    base_currency: str
    rows: pl.DataFrame
    totals: pl.DataFrame
    summary: pl.DataFrame
    # our column -> the statement heading read for it, when they differ (guessed or mapped)
    columns: dict[str, str] = field(default_factory=dict)
    # the warehouse reconciled against: explain_missing_ours and describe read it
    warehouse: Warehouse | None = field(default=None, repr=False, compare=False)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """The rows as a spreadsheet-safe CSV (see write_csv_safe)."""
        return write_csv_safe(self.rows, path)

    def period(self) -> str:
        return f"{self.start or 'the beginning'} .. {self.end or 'now'}"

    def describe(self, *, out: str | os.PathLike[str] | None = None, rows_shown: int = ROWS_SHOWN) -> str:
        """The summary per outcome, the rows left out of the totals for want of an fx rate, and the
        first `rows_shown` rows that are not matched (a missing_ours row with why we do not have
        it); `out`: where every row was written, else how to get them all."""
        lines = [f"reconciliation of {self.partner} ({self.date_basis} days in {self.tz}, {self.period()}):"]
        if self.columns:
            lines.append("  statement columns read: "
                         + ", ".join(f"{ours} <- {theirs!r}" for ours, theirs in self.columns.items()))
        for r in self.summary.iter_rows(named=True):
            lines.append(f"  {r['outcome']:<18} {r['rows']:>6}   ours {r['ours_amount_base']:,.2f}   theirs "
                         f"{r['theirs_amount_base']:,.2f} {self.base_currency}")
        for r in without_fx_rate(self).iter_rows(named=True):
            lines.append(f"  {r['outcome']}: {_rows(r['rows'])} in {r['currency']} "
                         f"{'has' if r['rows'] == 1 else 'have'} no fx rate for {'its' if r['rows'] == 1 else 'their'}"
                         f" day: not in the totals")
        lines += self._unmatched_lines(rows_shown)
        if out is not None:
            lines.append(f"all {_rows(self.rows.height)}, with every column: written to {out}")
        else:
            lines.append(f"all {_rows(self.rows.height)}, with every column: add --out FILE.csv")
        return "\n".join(lines)

    def _unmatched_lines(self, limit: int) -> list[str]:
        unmatched = self.rows.filter(pl.col("outcome") != "matched").sort(_outcome_rank(), *KEY)
        if unmatched.is_empty():
            return ["every row is matched"]
        shown = unmatched.head(max(limit, 0))
        why: dict[tuple[str, str], tuple[str, str]] = {}
        if self.warehouse is not None and (shown["outcome"] == "missing_ours").any():
            why = {(r["click_id"], r["transaction_id"]): (r["reason"], r["detail"])
                   for r in explain_missing_ours(self, self.warehouse).iter_rows(named=True)}
        lines = [f"rows not matched ({unmatched.height} of {self.rows.height}"
                 + (f", the first {shown.height}" if shown.height < unmatched.height else "") + "):"]
        for r in shown.iter_rows(named=True):
            key = r["click_id"] if r["transaction_id"] == r["click_id"] else f"{r['click_id']} / {r['transaction_id']}"
            sides = []
            if r["ours_amount"] is not None:
                sides.append(f"ours {r['ours_status']} {r['ours_amount']:,.2f} {r['ours_currency']} {r['ours_day']}")
            if r["theirs_amount"] is not None:
                sides.append(f"theirs {r['theirs_status_raw'] or r['theirs_status']} {r['theirs_amount']:,.2f} "
                             f"{r['theirs_currency']}" + (f" {r['theirs_date']}" if r["theirs_date"] else ""))
            lines.append(f"  {r['outcome']:<18} {key}   " + "   ".join(sides))
            if (r["click_id"], r["transaction_id"]) in why:
                reason, detail = why[(r["click_id"], r["transaction_id"])]
                lines.append(f"  {'':<18} why: {reason}: {detail}")
        if unmatched.height > shown.height:
            lines.append(f"  ... and {unmatched.height - shown.height} more")
        return lines


def _rows(n: int) -> str:
    return f"{n} row" + ("" if n == 1 else "s")


def _day(value: date | str | None, what: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise StatementError(f"{what} must be a date YYYY-MM-DD, got {value!r}") from None


def _heading_key(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text.lstrip("\ufeff").lower())


def guess_columns(names: list[str]) -> dict[str, str | None]:
    """Our column -> the statement heading that most likely means it (None: no such heading).

    Headings match COLUMN_ALIASES ignoring case, spaces, `_` and `-` ("Click ID", "ORDER_ID",
    "Payout"); the first alias that matches wins, the first of equal headings is taken, and
    a heading is used for one of our columns at most (in DEFAULT_COLUMNS order).
    """
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(_heading_key(name), name)
    guessed: dict[str, str | None] = {}
    for ours in DEFAULT_COLUMNS:
        taken = set(guessed.values())
        guessed[ours] = next((by_key[k] for k in map(_heading_key, COLUMN_ALIASES[ours])
                              if k in by_key and by_key[k] not in taken), None)
    return guessed


def read_statement_csv(source: str | os.PathLike[str] | bytes) -> pl.DataFrame:
    """A statement CSV (a path, or the bytes of an upload) as it is: every cell text, headings
    trimmed (and a BOM cut). StatementError says why it cannot be read."""
    where = ""
    if not isinstance(source, bytes):
        path = Path(source).expanduser()
        if not path.is_file():
            raise StatementError(f"statement file {path} does not exist (no such file)")
        source, where = path.read_bytes(), f"{path}: "
    try:
        raw = pl.read_csv(io.BytesIO(source), infer_schema=False, encoding="utf8-lossy")
    except Exception as exc:  # polars raises several error types for unreadable CSV
        raise StatementError(f"{where}cannot read it as CSV: {exc}") from None
    return _trim_headings(raw)


def _trim_headings(raw: pl.DataFrame) -> pl.DataFrame:
    """Headings without surrounding spaces or a byte-order mark (spreadsheet exports add both)."""
    return raw.rename({c: c.lstrip("\ufeff").strip() for c in raw.columns})


def statement_columns(headings: list[str], columns: dict[str, str] | None = None) -> dict[str, str]:
    """Our column -> the statement heading read for it: the caller's mapping first, then a
    heading named as ours, then guess_columns' pick ("Click ID", "Payout"...) for the rest.
    A heading is read for one of our columns at most."""
    explicit = dict(columns or {})
    unknown = sorted(set(explicit) - set(DEFAULT_COLUMNS))
    if unknown:
        raise StatementError(f"unknown column name(s) {', '.join(unknown)} in the mapping; ours are "
                             f"{', '.join(DEFAULT_COLUMNS)}")
    mapping = {**DEFAULT_COLUMNS, **explicit}
    taken = {mapping[ours] for ours in DEFAULT_COLUMNS if mapping[ours] in headings}
    for ours, theirs in guess_columns(headings).items():
        if ours not in explicit and mapping[ours] not in headings and theirs and theirs not in taken:
            mapping[ours] = theirs
            taken.add(theirs)
    return mapping


def read_statement(statement: str | os.PathLike[str] | pl.DataFrame,
                   columns: dict[str, str] | None = None) -> pl.DataFrame:
    """The statement with our column names: click_id, transaction_id, status_raw, status, amount, currency, date.

    Headings come from `columns` (ours -> theirs), else as statement_columns finds them."""
    name, raw = _statement_raw(statement)
    return _statement_frame(name, raw, statement_columns(raw.columns, columns))


def _statement_raw(statement: str | os.PathLike[str] | pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """(a name for messages, every cell as text with trimmed headings)."""
    if isinstance(statement, pl.DataFrame):
        return "the statement", _trim_headings(statement.select(pl.all().cast(pl.String)))
    return str(statement), read_statement_csv(statement)


def _statement_frame(name: str, raw: pl.DataFrame, mapping: dict[str, str]) -> pl.DataFrame:
    for ours in REQUIRED:
        if mapping[ours] not in raw.columns:
            via = "" if mapping[ours] == ours else f" (mapped from our {ours!r})"
            raise StatementError(
                f"{name} has no column {mapping[ours]!r}{via}; its columns are: {', '.join(raw.columns)}. "
                f"Map it with --column {ours}=<their column name> (or columns={{'{ours}': ...}}).")
    text = lambda ours: pl.col(mapping[ours]).str.strip_chars()  # noqa: E731
    has_txn = mapping["transaction_id"] in raw.columns
    has_date = mapping["date"] in raw.columns
    status = text("status").str.to_lowercase()
    frame = raw.with_row_index("statement_line", offset=2).select(
        pl.col("statement_line").cast(pl.Int64),
        text("click_id").alias("click_id"),
        (pl.coalesce(text("transaction_id"), text("click_id")) if has_txn else text("click_id"))
        .alias("transaction_id"),
        text("status").alias("status_raw"),
        pl.when(status.is_null() | (status == "")).then(pl.lit("approved"))
        .otherwise(status.replace_strict(STATUS_MAP, default="rejected", return_dtype=pl.String)).alias("status"),
        text("amount").alias("amount_text"),
        text("amount").str.to_decimal(scale=8).cast(MONEY).alias("amount"),
        text("currency").str.to_uppercase().alias("currency"),
        (text("date") if has_date else pl.lit(None, dtype=pl.String)).alias("date_text"),
    ).with_columns(pl.col("date_text").str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).alias("date"))
    problems = frame.filter(
        pl.col("click_id").is_null()
        | (pl.col("amount").is_null() & pl.col("amount_text").is_not_null())
        | (pl.col("date").is_null() & pl.col("date_text").is_not_null()))
    if not problems.is_empty():
        shown = "; ".join(
            f"line {r['statement_line']}: click_id={r['click_id']!r} amount={r['amount_text']!r} "
            f"date={r['date_text']!r}" for r in problems.head(5).iter_rows(named=True))
        raise StatementError(f"{name}: {problems.height} row(s) without a click id, or with an amount or date "
                             f"that is not a number / YYYY-MM-DD: {shown}")
    dupes = frame.filter(pl.struct(KEY).is_duplicated())
    if not dupes.is_empty():
        shown = ", ".join(f"line {r['statement_line']} ({r['click_id']}, {r['transaction_id']})"
                          for r in dupes.head(6).iter_rows(named=True))
        raise StatementError(f"{name} lists the same (click_id, transaction_id) more than once: {shown}. "
                             "Sum or remove the repeated rows, or add a transaction_id column.")
    return frame.drop("amount_text", "date_text")


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
    known = set(wh.conversions["partner_id"].drop_nulls().unique().to_list())
    if data_dir is not None and (data_dir / "config.toml").exists():
        from pipeline.runner import load_pipeline_config

        known |= set(load_pipeline_config(data_dir).partners)
    if partner not in known:
        raise UnknownPartnerError(f"unknown partner {partner!r}; known partners: {', '.join(sorted(known))}")
    name, raw = _statement_raw(statement)
    mapping = statement_columns(raw.columns, columns)
    theirs = _statement_frame(name, raw, mapping)
    start, end = _day(start, "start"), _day(end, "end")
    if start is None and end is None and theirs["date"].null_count() < theirs.height:
        start, end = theirs["date"].min(), theirs["date"].max()
    base = wh.conversions["base_currency"][0] if wh.conversions.height else "USD"
    basis = "converted_at" if date_basis == "conversion" else "clicked_at"
    ours = wh.conversions.filter(pl.col("partner_id") == partner).with_columns(
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
              .group_by("outcome", "currency").agg(*sums).sort(_outcome_rank(), "currency", nulls_last=True))
    per_outcome = rows.group_by("outcome").agg(*sums[:1], *sums[3:])
    summary = (pl.DataFrame({"outcome": list(OUTCOMES)}).join(per_outcome, on="outcome", how="left")
               .with_columns(pl.col("rows").fill_null(0), pl.col("rows_without_fx_rate").fill_null(0),
                             pl.col("ours_amount_base").fill_null(zero),
                             pl.col("theirs_amount_base").fill_null(zero))
               .with_columns((pl.col("theirs_amount_base") - pl.col("ours_amount_base")).cast(MONEY)
                             .alias("difference_base"))
               .sort(_outcome_rank()))
    return totals, summary


def _outcome_rank() -> pl.Expr:
    """An outcome's place in OUTCOMES: sort by it to list outcomes in their order."""
    return pl.col("outcome").replace_strict({o: i for i, o in enumerate(OUTCOMES)}, return_dtype=pl.Int64)


def safe_cell(value: Any) -> str | None:
    """A cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading apostrophe.

    Plain numbers (-12.50) are left alone: a spreadsheet reads them as numbers, not formulas.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def write_csv_safe(frame: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write `frame` as CSV with every cell neutralised against formula injection."""
    path = Path(path)
    _neutralised(frame).write_csv(path)
    return path


def csv_safe_bytes(frame: pl.DataFrame) -> bytes:
    """`frame` as write_csv_safe writes it, as UTF-8 bytes (for a download)."""
    return _neutralised(frame).write_csv().encode("utf-8")


def _neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """Every cell as text; one that a spreadsheet would run as a formula gets a leading apostrophe."""
    as_text = frame.with_columns(
        *(pl.col(c).list.eval(pl.element().cast(pl.String)).list.join(",") if isinstance(dt, pl.List)
          else pl.col(c).cast(pl.String) for c, dt in frame.schema.items()))
    risky = r"^[=+\-@\t\r]"
    return as_text.with_columns(
        pl.when(pl.col(c).str.contains(risky) & ~pl.col(c).str.contains(_NUMBER.pattern))
        .then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in as_text.columns)


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
    conversions = wh.conversions.select(
        *KEY, "partner_id", "offer_id",
        pl.col(basis).dt.convert_time_zone(result.tz).dt.date().cast(pl.String).fill_null("unknown").alias("day"))
    exact = (conversions.sort(pl.col("partner_id") != result.partner)
             .unique(KEY, keep="first", maintain_order=True)
             .select(*KEY, pl.col("partner_id").alias("_conv_partner"), pl.col("day").alias("_conv_day")))
    by_click = conversions.sort("day", *KEY).group_by("click_id").agg(
        pl.col("transaction_id").unique(maintain_order=True).head(3).str.join(", ").alias("_other_txns"),
        pl.len().alias("_other_count"), pl.col("partner_id").first().alias("_other_partner"),
        pl.col("day").first().alias("_other_day"))
    clicks = wh.clicks.select(
        "click_id", pl.col("partner_id").alias("_click_partner"), pl.col("offer_id").alias("_click_offer"),
        pl.col("clicked_at").dt.convert_time_zone(result.tz).dt.date().cast(pl.String).alias("_clicked_day"))
    issues = wh.postback_issues.filter(pl.col("click_id").is_not_null()).select(
        "click_id", pl.coalesce("transaction_id", "click_id").alias("_issue_transaction_id"), "seq",
        "received_at", "route", "error", pl.col("reason").alias("_issue_reason"),
        pl.col("detail").alias("_issue_detail"), "nearest_click_id")
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


def without_fx_rate(result: ReconcileResult) -> pl.DataFrame:
    """Per outcome and currency, the rows left out of the base-currency totals: an amount (ours or
    theirs) in that currency with no fx rate for its day. Columns outcome, currency, rows."""
    rows = result.rows
    sides = [rows.filter(pl.col(f"{side}_amount").is_not_null() & pl.col(f"{side}_amount_base").is_null())
             .select(*KEY, "outcome", pl.col(f"{side}_currency").alias("currency")) for side in ("ours", "theirs")]
    return (pl.concat(sides).unique().group_by("outcome", "currency").agg(pl.len().cast(pl.Int64).alias("rows"))
            .sort(_outcome_rank(), "currency", nulls_last=True))


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


def sample_statement(wh: Warehouse, partner: str, *, start: date | None = None, end: date | None = None,
                     seed: int = 1) -> pl.DataFrame:
    """A SAMPLE partner statement built from our own conversions with deliberate differences, so a
    demo shows every outcome: some rows dropped, amounts, statuses and currencies changed, and
    rows we do not have (click ids of that partner's refused postbacks, and never-received ones).

    Each (click_id, transaction_id) is listed once, as a statement must: a refused postback is
    listed once however often it was retried, and not at all when its key is among the
    partner's conversions (a refused try, then a recorded one).
    """
    import random
    import uuid

    rng = random.Random(seed)
    conv = wh.conversions.filter(pl.col("partner_id") == partner).with_columns(
        pl.col("converted_at").dt.date().alias("date"))
    if start is not None:
        conv = conv.filter(pl.col("date") >= start)
    if end is not None:
        conv = conv.filter(pl.col("date") <= end)
    rows: list[dict[str, Any]] = []
    listed: set[tuple[str, str]] = set()  # keys as read_statement will read them (trimmed)

    def add(click_id: str, transaction_id: str, status: str, amount: str, currency: str, day: date) -> None:
        key = (click_id.strip(), transaction_id.strip())
        if key[0] and key[1] and key not in listed:
            listed.add(key)
            rows.append({"click_id": click_id, "transaction_id": transaction_id, "status": status,
                         "amount": amount, "currency": currency, "date": day.isoformat()})

    flip = {"approved": "pending", "pending": "approved", "rejected": "approved"}
    for r in conv.sort("seq").iter_rows(named=True):
        roll = rng.random()
        if roll < 0.05:
            continue  # missing_theirs
        status, amount, currency = r["status"], r["amount"], r["currency"]
        if roll < 0.09:
            amount = amount + rng.choice([-5, -1, 1, 2, 10])
        elif roll < 0.12:
            status = flip[status]
        elif roll < 0.13:
            currency = "EUR" if currency != "EUR" else "USD"
        add(r["click_id"], r["transaction_id"], status, str(max(amount, 0)), currency, r["date"])
    # a key we recorded for this partner is no refused row, even when dropped above or outside the period
    recorded = {(c.strip(), t.strip()) for c, t in wh.conversions.filter(pl.col("partner_id") == partner)
                .select(*KEY).iter_rows()}
    refused = wh.postback_issues.filter(
        (pl.coalesce("partner_id", "key_partner_id") == partner) & pl.col("click_id").is_not_null()
        & pl.col("error").is_in(["click_not_found", "invalid_api_key", "api_key_required", "not_found"]))
    if start is not None:
        refused = refused.filter(pl.col("received_at").dt.date() >= start)
    if end is not None:
        refused = refused.filter(pl.col("received_at").dt.date() <= end)
    wanted = len(listed) + 8
    for r in refused.sort("seq").iter_rows(named=True):
        if len(listed) >= wanted:
            break
        transaction_id = r["transaction_id"] or r["click_id"]
        if (r["click_id"].strip(), transaction_id.strip()) not in recorded:
            add(r["click_id"], transaction_id, "approved", str(r["amount"] or "10.00"), r["currency"] or "USD",
                r["received_at"].date())
    last_day = end or (conv["date"].max() if conv.height else date.today())
    for _ in range(2):
        click_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        add(click_id, click_id, "approved", f"{rng.uniform(5, 80):.2f}", "USD", last_day)
    schema = {"click_id": pl.String, "transaction_id": pl.String, "status": pl.String, "amount": pl.String,
              "currency": pl.String, "date": pl.String}
    return pl.DataFrame(rows, schema=schema)


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
