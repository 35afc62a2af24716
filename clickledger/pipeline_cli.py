"""`clickledger run | credit | reconcile`: the pipeline's batch commands.

`register(subparsers)` is called by clickledger.cli while it builds its parser, so this
module imports nothing heavy at import time: Polars, DuckDB and pandera are imported
inside the command functions. Commands print their summary to stdout, progress and
warnings to stderr, and exit non-zero with the error's message on failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_DATA = Path("data")
PROGRESS_MIN_SEGMENTS = 20  # fewer segments than this finish too fast to need progress lines


class _Progress:
    """The run's progress on stderr (clickledger.progress: a bar with rate and ETA on a terminal, a
    line every few seconds in a log), from the pipeline's (index, total, item) callback; silent on
    logs of fewer than PROGRESS_MIN_SEGMENTS segments, which finish too fast to need it."""

    def __init__(self) -> None:
        from clickledger.progress import Progress

        self.shown = Progress()
        self.quiet = False

    def __call__(self, index: int, total: int, item: object) -> None:
        if isinstance(item, Path) and index == 1:
            self.quiet = total < PROGRESS_MIN_SEGMENTS
        if not self.quiet:
            self.shown(index, total, item)

    def close(self) -> None:
        self.shown.close()


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr, not the one at setup: a caller (pytest, a notebook) may
    swap it between commands, and a handler holding a closed stream would lose the warning."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def setup_logging() -> None:
    """Pipeline warnings to stderr as `warning: ...` (once per process)."""
    logger = logging.getLogger("clickledger.pipeline")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def _fail(exc: Exception) -> int:
    print(f"clickledger: {exc}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    setup_logging()
    from pipeline.errors import PipelineError
    from pipeline.runner import run

    progress = _Progress()
    try:
        summary = run(args.data, skip_corrupt=args.skip_corrupt, progress=progress)
    except PipelineError as exc:
        return _fail(exc)
    finally:
        progress.close()
    print(summary.describe())
    return 0


def _credit(args: argparse.Namespace) -> int:
    setup_logging()
    from pipeline.errors import PipelineError
    from pipeline.runner import credit

    progress = _Progress()
    try:
        report = credit(args.data, skip_corrupt=args.skip_corrupt, progress=progress)
    except PipelineError as exc:
        return _fail(exc)
    finally:
        progress.close()
    print(report.describe())
    return 0


def _parse_columns(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"--column wants ours=theirs (e.g. amount=Payout), got {pair!r}")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def _reconcile(args: argparse.Namespace) -> int:
    setup_logging()
    from pipeline.errors import PipelineError
    from pipeline.reconciliation import reconcile

    try:
        result = reconcile(args.data, partner=args.partner, statement=args.statement,
                           columns=_parse_columns(args.column), date_basis=args.date_basis, tz=args.tz,
                           start=args.start, end=args.end)
        if args.out:
            result.to_csv(args.out)
    except (PipelineError, ValueError) as exc:
        return _fail(exc)
    print(result.describe(out=args.out))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the pipeline's subcommands to clickledger's parser."""
    from clickledger.cli import add_command, add_data_option

    def data_option(p: argparse.ArgumentParser) -> None:
        add_data_option(p, DEFAULT_DATA, "the data directory (config.toml, log/, fx_rates.csv)")

    def skip_corrupt_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--skip-corrupt", action="store_true",
                       help="skip (and list) corrupt lines in the middle of a segment instead of refusing")

    p = add_command(
        subparsers, "run", "derive the warehouse tables from the log",
        "Stage the new segments of DATA/log/, check them, derive clicks, postbacks, conversions, "
        "earnings and postback issues for the click days they touch (DATA/warehouse/<table>/"
        "click_day=YYYY-MM-DD/), the wallet tables, and warehouse.duckdb. Prints a summary; "
        "progress (rate and ETA) goes to stderr on long logs.",
        _run, lambda a: a.data)
    data_option(p)
    skip_corrupt_option(p)

    p = add_command(
        subparsers, "credit", "append wallet credits for new counted earn conversions",
        "The wallet-credit batch job: derive the conversions as `run` does, append a credit for "
        "each new counted earn conversion (and a debit for each reversed one) to "
        "DATA/ledger/wallet_credits.ndjson, never twice, and refresh the tables.",
        _credit, lambda a: a.data)
    data_option(p)
    skip_corrupt_option(p)

    p = add_command(
        subparsers, "reconcile", "compare a partner's statement with our conversions",
        "Match a partner's CSV statement with our conversions by (click_id, transaction_id) and "
        "print the totals per outcome (matched, missing on either side, amount, status or "
        "currency mismatch); --out writes one row per key.",
        _reconcile, lambda a: a.data)
    p.add_argument("--partner", required=True, help="partner id, as in config.toml")
    p.add_argument("--statement", required=True, type=Path, metavar="FILE",
                   help="the partner's CSV statement")
    data_option(p)
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write one row per key to this CSV (spreadsheet-safe)")
    p.add_argument("--date-basis", choices=("conversion", "click"), default="conversion",
                   help="which of our times the statement's days refer to (default: conversion)")
    p.add_argument("--tz", default="UTC", help="time zone of the statement's days (default: UTC)")
    p.add_argument("--start", help="first day of the statement period, YYYY-MM-DD (default: from the file)")
    p.add_argument("--end", help="last day of the statement period, YYYY-MM-DD (default: from the file)")
    p.add_argument("--column", action="append", default=[], metavar="OURS=THEIRS",
                   help="map one of our column names to the statement's (repeatable), e.g. amount=Payout")


def demo_steps(data_dir: Path) -> int:
    """`make demo`: run the pipeline and the credit job over the demo log, printing both summaries."""
    setup_logging()
    from pipeline.errors import PipelineError
    from pipeline.runner import credit, run

    progress = _Progress()
    try:
        summary = run(data_dir, progress=progress)
        progress.close()
        print()
        print(summary.describe())
        report = credit(data_dir)
        print()
        print(report.describe())
    except PipelineError as exc:
        return _fail(exc)
    return 0
