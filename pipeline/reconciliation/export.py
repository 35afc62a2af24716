"""Spreadsheet-safe export: the one rule for a cell a spreadsheet would run as a formula, and
the CSV files and downloads written with it.

A statement's cells come from a partner and end up in finance's spreadsheet: a cell such
as `=HYPERLINK(...)` would run there. Every cell written goes through safe_text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a cell starting with one of these runs as a formula
_PLAIN_NUMBER = r"^-?\d+(\.\d+)?$"  # -12.50: a spreadsheet reads it as a number, not a formula


def safe_text(text: pl.Expr) -> pl.Expr:
    """The rule, over a String expression: a cell starting with = + - @ tab or CR gets a leading
    apostrophe, so a spreadsheet shows it as text; a plain number (-12.50) is left alone."""
    runs = text.str.slice(0, 1).is_in(list(FORMULA_START)) & ~text.str.contains(_PLAIN_NUMBER)
    return pl.when(runs).then(pl.lit("'") + text).otherwise(text)


def safe_cell(value: Any) -> str | None:
    """One value as the export writes it (safe_text over its text; None stays None)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return pl.select(safe_text(pl.lit(text, dtype=pl.String))).item()


def spreadsheet_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Every cell as text (a list's items joined with commas), each through safe_text."""
    as_text = frame.with_columns(
        *(pl.col(c).list.eval(pl.element().cast(pl.String)).list.join(",") if isinstance(dt, pl.List)
          else pl.col(c).cast(pl.String) for c, dt in frame.schema.items()))
    return as_text.with_columns(safe_text(pl.col(c)).alias(c) for c in as_text.columns)


def write_csv_safe(frame: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write `frame` as CSV with every cell neutralised against formula injection."""
    path = Path(path)
    spreadsheet_safe(frame).write_csv(path)
    return path


def csv_safe_bytes(frame: pl.DataFrame) -> bytes:
    """`frame` as write_csv_safe writes it, as UTF-8 bytes (for a download)."""
    return spreadsheet_safe(frame).write_csv().encode("utf-8")
