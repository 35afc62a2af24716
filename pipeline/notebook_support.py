"""What the three notebooks share: where the data is, loading it (or running the pipeline,
or saying what to do), money display.

Kept in the package (not beside the notebooks) so exported Jupyter notebooks import it too.
marimo is imported where it is used: `import pipeline` must not pay for it.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import PipelineError
from pipeline.warehouse import Warehouse, load
from receiver.contract.datadir import DataDir
from receiver.contract.framing import segment_paths

RUN_BUTTON_LABEL = "Run the pipeline over this log now"


def cli_arg(name: str) -> str | None:
    """`--name VALUE` after `--` on a notebook's command line; None when absent or empty, and
    in a Jupyter kernel (no marimo context, no command line of ours)."""
    try:
        import marimo as mo

        value = mo.cli_args().get(name)
    except Exception:
        return None
    return None if value in (None, "") else str(value)


def default_data_dir() -> str:
    """--data after `--` on the command line, else CLICKLEDGER_DATA, else the demo."""
    return cli_arg("data") or os.environ.get("CLICKLEDGER_DATA") or "data/demo"


def warehouse_or_hint(data_dir: str | Path) -> tuple[Warehouse | None, str | None]:
    """The warehouse of `data_dir`, or (None, what to do) when it has none yet."""
    data_dir = Path(data_dir).expanduser()
    if not DataDir(data_dir).warehouse_dir.is_dir():
        return None, (f"No warehouse in `{data_dir}` yet. Run `make demo`, or "
                      f"`clickledger run --data {data_dir}` over your log, then reload.")
    return load(data_dir), None


def pipeline_run_button() -> Any:
    """The button load_or_explain shows under a log that has no warehouse yet."""
    import marimo as mo

    return mo.ui.run_button(label=RUN_BUTTON_LABEL, kind="success")


def load_or_explain(data_dir: str | Path, button: Any) -> tuple[Warehouse | None, Any]:
    """(warehouse, None), or (None, what to show instead): how to make one, and `button` when
    the directory holds a log awaiting its first run. With the button pressed, runs the
    pipeline first (a progress bar over the log's segments).

    A notebook cell: `wh, instead = load_or_explain(data_input.value, run); mo.stop(wh is None, instead)`.
    """
    import marimo as mo

    data_dir = Path(str(data_dir).strip() or ".").expanduser()
    segments = segment_paths(DataDir(data_dir).log_dir)
    if getattr(button, "value", False) and segments:
        try:
            with mo.status.progress_bar(total=len(segments), title="Deriving the warehouse from the log",
                                        remove_on_exit=True) as bar:
                from pipeline.runner import run

                run(data_dir, progress=lambda i, n, item: bar.update(subtitle=_step_text(i, n, item)))
        except PipelineError as exc:
            return None, mo.callout(mo.md(f"**The pipeline refused this log:** {exc}"), kind="danger")
    with mo.status.spinner(title="Loading the warehouse..."):
        wh, hint = warehouse_or_hint(data_dir)
    if wh is not None:
        return wh, None
    if segments:
        return None, mo.callout(mo.vstack([
            mo.md(f"`{data_dir}` has a log ({len(segments)} segment(s)) but no warehouse yet. {hint}"),
            button]), kind="warn")
    return None, mo.callout(mo.md(hint or ""), kind="warn")


def _step_text(index: int, total: int, item: object) -> str:
    """A run's progress callback item as words: a segment it stages, or a click day it derives."""
    if isinstance(item, Path):
        return f"segment {index} of {total}: {item.name}"
    return f"click day {index} of {total}: {str(item).removeprefix('click_day=')}"


def display_money(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimal columns as floats rounded to cents: for display and charts only, never for sums."""
    return frame.with_columns(pl.col(pl.Decimal).cast(pl.Float64).round(2))


def display_times(frame: pl.DataFrame) -> pl.DataFrame:
    """Datetime columns as `YYYY-MM-DD HH:MM:SS` text (in their own time zone, UTC in the
    warehouse), and the log's ISO text `received_at` likewise: for display only."""
    return frame.with_columns(
        *(pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S") for c, dt in frame.schema.items()
          if isinstance(dt, pl.Datetime)),
        *(pl.col(c).str.slice(0, 19).str.replace("T", " ", literal=True) for c, dt in frame.schema.items()
          if c == "received_at" and dt == pl.String))


def mark_difference(theirs: str, ours: str) -> str:
    """Both ids as HTML, one above the other, with the part where they differ highlighted."""
    start = 0
    while start < min(len(theirs), len(ours)) and theirs[start] == ours[start]:
        start += 1
    end = 0
    while end < min(len(theirs), len(ours)) - start and theirs[-1 - end] == ours[-1 - end]:
        end += 1

    def show(text: str) -> str:
        middle = text[start:len(text) - end]
        return (html.escape(text[:start]) + f"<mark style='background:#ffd54f'>{html.escape(middle) or '&#8203;'}"
                "</mark>" + html.escape(text[len(text) - end:]))

    return (f"<pre style='margin:0.4em 0;font-size:0.95em'>they sent  {show(theirs)}\n"
            f"we issued  {show(ours)}</pre>")
