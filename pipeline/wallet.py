"""Wallet credits: the append-only ledger DATA/ledger/wallet_credits.ndjson and the credit batch job.

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

Each ledger line is one JSON entry with its own crc32, like the event log
(receiver.log.encode_record). `entry_id` is a hash of kind, click_id and
transaction_id, so a conversion can be credited (and debited) at most once: a job
reads the ledger first and skips entries already present. A run interrupted half way
leaves either whole lines (skipped next time) or one torn last line, which the next
job cuts off (it was never complete, so nothing acknowledged is lost) before
appending. Appends are fsync'd before the job reports success, and a lock file keeps
two jobs from appending at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import LedgerError
from pipeline.money import CENTS, cents
from pipeline.schemas import polars_schema
from receiver.log import BadLine, encode_record, iter_lines
from receiver.timeutil import format_utc

log = logging.getLogger("clickledger.pipeline")

LEDGER_DIR = "ledger"
LEDGER_FILE = "wallet_credits.ndjson"
ENTRY_FIELDS = ("entry_id", "batch_id", "credited_at", "kind", "user_id", "click_id", "transaction_id",
                "amount", "currency", "event_id", "seq")


def ledger_path(data_dir: Path) -> Path:
    return Path(data_dir) / LEDGER_DIR / LEDGER_FILE


def entry_id(kind: str, click_id: str, transaction_id: str) -> str:
    """Deterministic id of the one credit (or debit) a conversion can ever have."""
    return hashlib.sha256(f"{kind}\x1f{click_id}\x1f{transaction_id}".encode()).hexdigest()[:32]


@dataclass
class Ledger:
    entries: list[dict[str, Any]]
    lines: list[int]
    torn: BadLine | None
    good_size: int  # bytes up to the end of the last complete line


def read_ledger(path: Path) -> Ledger:
    """The ledger's entries; a torn last line is reported, a corrupt line elsewhere is an error."""
    if not path.exists():
        return Ledger([], [], None, 0)
    entries, lines, torn = [], [], None
    for line_no, item in iter_lines(path):
        if isinstance(item, BadLine):
            if not item.torn:
                raise LedgerError(f"{path} line {item.line_no} is corrupt (crc32 mismatch): {item.excerpt[:80]!r}. "
                                  "The wallet ledger is damaged: restore it from a backup before crediting.")
            torn = item
            log.warning("skipping torn last line %d of %s (an interrupted credit job)", item.line_no, path)
            continue
        missing = [f for f in ENTRY_FIELDS if f not in item]
        if missing:
            raise LedgerError(f"{path} line {line_no} lacks {', '.join(missing)}; it is not a wallet entry.")
        entries.append(item)
        lines.append(line_no)
    good_size = torn.offset if torn is not None else path.stat().st_size
    return Ledger(entries, lines, torn, good_size)


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
    currency: str = "USD"

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


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".credit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedgerError(f"another credit job is running on {directory}; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def append_entries(path: Path, ledger: Ledger, entries: list[dict[str, Any]]) -> None:
    """Cut a torn last line off, append the entries, fsync file (and directory when new)."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if ledger.torn is not None:
            os.ftruncate(fd, ledger.good_size)
        data = b"".join(encode_record(e) for e in entries)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def credit_batch(data_dir: Path, conversions: pl.DataFrame, *, base_currency: str,
                 now: datetime | None = None, batch_id: str | None = None) -> CreditReport:
    """Append this batch's credits and debits to the ledger (idempotent; see the module docstring)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    batch_id = batch_id or f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    path = ledger_path(data_dir)
    with _locked(path.parent):
        ledger = read_ledger(path)
        planned, skipped = plan_entries(conversions, ledger.entries, batch_id=batch_id, credited_at=now)
        if planned or ledger.torn is not None:
            append_entries(path, ledger, planned)
    return CreditReport(batch_id, now, path, planned, skipped, len(ledger.entries), ledger.torn is not None,
                        base_currency)


def build_wallet_tables(data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(wallet_credits, wallet_balances) from the ledger, in ledger order."""
    ledger = read_ledger(ledger_path(data_dir))
    credits_schema, balances_schema = polars_schema("wallet_credits"), polars_schema("wallet_balances")
    raw = pl.DataFrame(
        [{**{f: e[f] for f in ENTRY_FIELDS}, "ledger_line": line} for e, line in zip(ledger.entries, ledger.lines,
                                                                                    strict=True)],
        schema={**{f: pl.String for f in ENTRY_FIELDS}, "seq": pl.Int64, "ledger_line": pl.Int64},
    )
    signed = pl.when(pl.col("kind") == "debit").then(-pl.col("amount")).otherwise(pl.col("amount"))
    credits = raw.with_columns(
        pl.col("credited_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"),
        pl.col("amount").str.to_decimal(scale=2).cast(CENTS),
    ).with_columns(signed.cast(CENTS).alias("signed_amount")).with_columns(
        pl.col("signed_amount").cum_sum().over("user_id", order_by="ledger_line").cast(CENTS)
        .alias("running_balance"))
    credits = credits.select(list(credits_schema)).sort("ledger_line").cast(credits_schema)  # type: ignore[arg-type]
    zero = pl.lit(0, dtype=CENTS)
    balances = credits.group_by("user_id", "currency").agg(
        pl.when(pl.col("kind") == "credit").then(pl.col("amount")).otherwise(zero).sum().cast(CENTS).alias("credited"),
        pl.when(pl.col("kind") == "debit").then(pl.col("amount")).otherwise(zero).sum().cast(CENTS).alias("debited"),
        pl.col("signed_amount").sum().cast(CENTS).alias("balance"),
        pl.len().cast(pl.Int64).alias("entries"),
        pl.col("credited_at").max().alias("last_entry_at"),
    )
    balances = balances.select(list(balances_schema)).sort("user_id", "currency").cast(balances_schema)  # type: ignore[arg-type]
    return credits, balances
