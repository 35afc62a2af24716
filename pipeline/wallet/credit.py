"""The credit batch job: what each run appends to the wallet ledger, and its report.

Seed 000: a user's wallet is credited when a completed postback arrives. Here the
batch job appends, for each counted earn conversion (a click with source "earn" and a
user) not yet credited, one `credit` of the user's share (the conversion's
`affiliate_payout_base`: the offer's revenue share of the amount, in base currency),
rounded half-to-even to cents. A later reversal (approved -> rejected by a status
update) of a credited conversion appends one `debit` of exactly the credited amount.

One click = one credit (seed 000: "One click = One conversion - System prevents
duplicate credits"): an earn click is credited at most once, for its first counted
conversion in log order. A further counted conversion of the same click (an advertiser
retrying with a new transactionId) is not credited; the batch reports it in `skipped`
so support can look at it.

A job reads the ledger first and skips entries already present (their ids are
deterministic), so running it again, or after a run interrupted half way, appends only
what is missing. Appends are fsync'd before the job reports success.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.money import cents
from pipeline.wallet.ledger import append_entries, entry_id, ledger_lock, ledger_path, read_ledger
from receiver.contract.config import DEFAULT_CURRENCY
from receiver.contract.timeutil import format_utc


@dataclass
class CreditReport:
    """What one credit batch appended."""

    batch_id: str
    credited_at: datetime
    ledger: Path
    appended: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # counted, but their click was credited
    existing: int = 0
    repaired_torn_line: bool = False
    currency: str = DEFAULT_CURRENCY  # the base currency of the credited amounts

    @property
    def credits(self) -> int:
        return sum(1 for e in self.appended if e["kind"] == "credit")

    @property
    def debits(self) -> int:
        return sum(1 for e in self.appended if e["kind"] == "debit")

    def total(self, kind: str) -> Decimal:
        return sum((Decimal(e["amount"]) for e in self.appended if e["kind"] == kind), Decimal("0.00"))

    def describe(self) -> str:
        lines = [f"clickledger credit: batch {self.batch_id}",
                 f"  credits      {self.credits} ({self.total('credit'):,.2f} {self.currency})",
                 f"  debits       {self.debits} ({self.total('debit'):,.2f} {self.currency}, reversals)",
                 f"  ledger       {self.ledger} ({self.existing + len(self.appended)} entries)"]
        if self.skipped:
            lines.append(f"  not credited {len(self.skipped)} further conversion(s) of already credited "
                         "earn clicks (one click = one credit)")
        if self.repaired_torn_line:
            lines.append("  note         a torn last line from an interrupted job was cut off and redone")
        if not self.appended:
            lines.append("  nothing new to credit")
        return "\n".join(lines)


def plan_entries(conversions: pl.DataFrame, existing: list[dict[str, Any]], *, batch_id: str,
                 credited_at: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(entries this batch must append, counted conversions not credited because their earn click
    already was); deterministic order: log seq, then kind."""
    present = {e["entry_id"] for e in existing}
    credited = {(e["click_id"], e["transaction_id"]): e for e in existing if e["kind"] == "credit"}
    credited_clicks = {click_id for click_id, _ in credited}
    skipped: list[dict[str, Any]] = []
    when = format_utc(credited_at)
    earn = conversions.filter((pl.col("click_source") == "earn") & pl.col("user_id").is_not_null())
    planned: list[dict[str, Any]] = []

    def entry(kind: str, row: dict[str, Any], amount: Decimal, event_id: str, seq: int) -> dict[str, Any]:
        return {"entry_id": entry_id(kind, row["click_id"], row["transaction_id"]), "batch_id": batch_id,
                "credited_at": when, "kind": kind, "user_id": row["user_id"], "click_id": row["click_id"],
                "transaction_id": row["transaction_id"], "amount": f"{amount:.2f}",
                "currency": row["base_currency"], "event_id": event_id, "seq": seq}

    for row in earn.sort("seq").iter_rows(named=True):
        key = (row["click_id"], row["transaction_id"])
        credit_id = entry_id("credit", *key)
        if row["counts"] and credit_id not in present and row["affiliate_payout_base"] is not None:
            if row["click_id"] in credited_clicks:
                skipped.append({"click_id": row["click_id"], "transaction_id": row["transaction_id"],
                                "user_id": row["user_id"], "event_id": row["event_id"], "seq": row["seq"]})
                continue
            planned.append(entry("credit", row, cents(row["affiliate_payout_base"]), row["event_id"], row["seq"]))
            credited_clicks.add(row["click_id"])
        elif row["status"] == "rejected" and key in credited and entry_id("debit", *key) not in present:
            amount = Decimal(credited[key]["amount"])
            planned.append(entry("debit", row, amount, row["last_event_id"], row["last_seq"]))
    return planned, skipped


def credit_batch(data_dir: Path, conversions: pl.DataFrame, *, base_currency: str,
                 now: datetime | None = None, batch_id: str | None = None) -> CreditReport:
    """Append this batch's credits and debits to the ledger (idempotent; see the module docstring)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    batch_id = batch_id or f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    path = ledger_path(data_dir)
    with ledger_lock(path.parent):
        ledger = read_ledger(path)
        planned, skipped = plan_entries(conversions, ledger.entries, batch_id=batch_id, credited_at=now)
        if planned or ledger.torn is not None:
            append_entries(path, ledger, planned)
    return CreditReport(batch_id, now, path, planned, skipped, len(ledger.entries), ledger.torn is not None,
                        base_currency)
