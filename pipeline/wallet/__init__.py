"""Wallet credits: the append-only ledger DATA/ledger/wallet_credits.ndjson, the credit batch
job that appends to it, and the tables derived from it.

- ledger: the ledger's entries, reading it (a torn last line reported), appending (fsync'd,
  under a lock);
- credit: the batch job (one credit per earn click, one debit per reversal) and its report;
- tables: wallet_credits and wallet_balances, from the ledger.
"""

from pipeline.wallet.credit import CreditReport, credit_batch, plan_entries
from pipeline.wallet.ledger import (
    ENTRY_FIELDS,
    LEDGER_DIR,
    LEDGER_FILE,
    Ledger,
    append_entries,
    entry_id,
    ledger_lock,
    ledger_path,
    read_ledger,
)
from pipeline.wallet.tables import build_wallet_tables

__all__ = [
    "ENTRY_FIELDS",
    "LEDGER_DIR",
    "LEDGER_FILE",
    "CreditReport",
    "Ledger",
    "append_entries",
    "build_wallet_tables",
    "credit_batch",
    "entry_id",
    "ledger_lock",
    "ledger_path",
    "plan_entries",
    "read_ledger",
]
