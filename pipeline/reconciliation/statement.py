"""Reading a partner's statement: its headings matched to our columns, its cells checked and normalised.

A statement is a CSV (or a DataFrame) with click_id, transaction_id (optional: it
defaults to the click id, as on the receiver), status, amount, currency and an
optional date; `columns` maps our names to the file's (`{"amount": "Payout"}`), and
headings not mapped are guessed from usual export headings (guess_columns). The
statement's status goes through the receiver's STATUS_MAP.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import polars as pl

from pipeline.errors import StatementError
from pipeline.money import MONEY
from pipeline.reconciliation.outcomes import KEY
from receiver.contract.params import AMOUNT, CLICK_ID, STATUS_MAP, TRANSACTION_ID

DEFAULT_COLUMNS = {"click_id": "click_id", "transaction_id": "transaction_id", "status": "status",
                   "amount": "amount", "currency": "currency", "date": "date"}
REQUIRED = ("click_id", "status", "amount", "currency")
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
    name, raw = statement_text(statement)
    return statement_frame(name, raw, statement_columns(raw.columns, columns))


def statement_text(statement: str | os.PathLike[str] | pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """(a name for messages, every cell as text with trimmed headings)."""
    if isinstance(statement, pl.DataFrame):
        return "the statement", _trim_headings(statement.select(pl.all().cast(pl.String)))
    return str(statement), read_statement_csv(statement)


def statement_frame(name: str, raw: pl.DataFrame, mapping: dict[str, str]) -> pl.DataFrame:
    """The statement's cells (`raw`, as statement_text reads them) under our column names, per
    `mapping` (ours -> theirs); StatementError names the rows that cannot be read, or are repeated."""
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
