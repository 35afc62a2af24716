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

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """The rows as a spreadsheet-safe CSV (see write_csv_safe)."""
        return write_csv_safe(self.rows, path)

    def describe(self) -> str:
        period = f"{self.start or 'beginning'} .. {self.end or 'now'}"
        lines = [f"reconciliation of {self.partner} ({self.date_basis} days in {self.tz}, {period}):"]
        if self.columns:
            lines.append("  statement columns read: "
                         + ", ".join(f"{ours} <- {theirs!r}" for ours, theirs in self.columns.items()))
        for r in self.summary.iter_rows(named=True):
            lines.append(f"  {r['outcome']:<18} {r['rows']:>6}   ours {r['ours_amount_base']:,.2f}   theirs "
                         f"{r['theirs_amount_base']:,.2f} {self.base_currency}")
        return "\n".join(lines)


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
    return ReconcileResult(partner, date_basis, tz, start, end, base, rows, totals, summary, read)


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
    order = pl.DataFrame({"outcome": list(OUTCOMES), "_order": list(range(len(OUTCOMES)))})
    totals = (rows.with_columns(pl.coalesce("ours_currency", "theirs_currency").alias("currency"))
              .group_by("outcome", "currency").agg(*sums)
              .join(order, on="outcome").sort("_order", "currency", nulls_last=True).drop("_order"))
    per_outcome = rows.group_by("outcome").agg(*sums[:1], *sums[3:])
    summary = (order.join(per_outcome, on="outcome", how="left")
               .with_columns(pl.col("rows").fill_null(0), pl.col("rows_without_fx_rate").fill_null(0),
                             pl.col("ours_amount_base").fill_null(zero),
                             pl.col("theirs_amount_base").fill_null(zero))
               .with_columns((pl.col("theirs_amount_base") - pl.col("ours_amount_base")).cast(MONEY)
                             .alias("difference_base"))
               .sort("_order").drop("_order"))
    return totals, summary


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


NEVER_RECEIVED = ("never_received", "No request with this click id ever reached us: ask the partner whether "
                  "the postback was sent, and to which URL (see the README's endpoints).")


def explain_missing_ours(result: ReconcileResult, wh: Warehouse) -> pl.DataFrame:
    """Why each missing_ours row is not among our conversions, from postback_issues.

    A row's explanation is the latest issue (by log seq) with its click id, preferring one with
    the same transaction id; with none, the request never reached us (`never_received`).
    """
    missing = result.rows.filter(pl.col("outcome") == "missing_ours").select(
        *KEY, "theirs_amount", "theirs_currency", "theirs_date")
    issues = wh.postback_issues.filter(pl.col("click_id").is_not_null()).select(
        "click_id", pl.col("transaction_id").alias("issue_transaction_id"), "seq", "received_at", "route",
        "error", "reason", "detail", "nearest_click_id")
    matched = missing.join(issues, on="click_id", how="left").with_columns(
        (pl.col("issue_transaction_id") == pl.col("transaction_id")).fill_null(False).alias("_same_txn"))
    best = (matched.sort([*KEY, "_same_txn", "seq"], nulls_last=False)
            .group_by(KEY, maintain_order=True).last())
    return best.with_columns(
        pl.col("reason").fill_null(pl.lit(NEVER_RECEIVED[0])),
        pl.col("detail").fill_null(pl.lit(NEVER_RECEIVED[1])),
        pl.col("received_at").alias("last_attempt_at"),
    ).select(*KEY, "theirs_amount", "theirs_currency", "theirs_date", "reason", "error", "detail",
             "nearest_click_id", "last_attempt_at", "route").sort(KEY)


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
        rows.append({"click_id": r["click_id"], "transaction_id": r["transaction_id"], "status": status,
                     "amount": str(max(amount, 0)), "currency": currency, "date": r["date"].isoformat()})
    refused = wh.postback_issues.filter(
        (pl.coalesce("partner_id", "key_partner_id") == partner) & pl.col("click_id").is_not_null()
        & pl.col("error").is_in(["click_not_found", "invalid_api_key", "api_key_required", "not_found"]))
    if start is not None:
        refused = refused.filter(pl.col("received_at").dt.date() >= start)
    if end is not None:
        refused = refused.filter(pl.col("received_at").dt.date() <= end)
    for r in refused.sort("seq").head(8).iter_rows(named=True):
        rows.append({"click_id": r["click_id"], "transaction_id": r["transaction_id"] or r["click_id"],
                     "status": "approved", "amount": r["amount"] or "10.00", "currency": r["currency"] or "USD",
                     "date": r["received_at"].date().isoformat()})
    last_day = (end or (conv["date"].max() if conv.height else date.today())).isoformat()
    for _ in range(2):
        click_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        rows.append({"click_id": click_id, "transaction_id": click_id, "status": "approved",
                     "amount": f"{rng.uniform(5, 80):.2f}", "currency": "USD", "date": last_day})
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
