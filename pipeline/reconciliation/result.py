"""What a reconciliation gives: its rows, totals and summary, and the text that describes them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from pipeline.reconciliation.export import write_csv_safe
from pipeline.reconciliation.missing import explain_missing_ours
from pipeline.reconciliation.outcomes import KEY, outcome_rank
from pipeline.reconciliation.views import without_fx_rate
from pipeline.warehouse import Warehouse

ROWS_SHOWN = 20  # rows not matched that describe() lists


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
        unmatched = self.rows.filter(pl.col("outcome") != "matched").sort(outcome_rank(), *KEY)
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
