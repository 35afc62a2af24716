"""What the three notebooks share: where the data is, loading it or saying what to do, money display.

Kept in the package (not beside the notebooks) so exported Jupyter notebooks import it too.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from pipeline.warehouse import Warehouse, load


def default_data_dir() -> str:
    """--data after `--` on the command line, else CLICKLEDGER_DATA, else the demo."""
    try:
        import marimo as mo

        from_cli = mo.cli_args().get("data")
    except Exception:  # a Jupyter kernel has no marimo context (and no command line of ours)
        from_cli = None
    return str(from_cli or os.environ.get("CLICKLEDGER_DATA") or "data/demo")


def warehouse_or_hint(data_dir: str | Path) -> tuple[Warehouse | None, str | None]:
    """The warehouse of `data_dir`, or (None, what to do) when it has none yet."""
    data_dir = Path(data_dir).expanduser()
    if not (data_dir / "warehouse").is_dir():
        return None, (f"No warehouse in `{data_dir}` yet. Run `make demo`, or "
                      f"`clickledger run --data {data_dir}` over your log, then reload.")
    return load(data_dir), None


def display_money(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimal columns as floats rounded to cents: for display and charts only, never for sums."""
    return frame.with_columns(pl.col(pl.Decimal).cast(pl.Float64).round(2))
