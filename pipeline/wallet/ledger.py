"""The wallet ledger DATA/ledger/wallet_credits.ndjson: its entries, reading it, appending to it.

Each ledger line is one JSON entry with its own crc32, like the event log
(receiver.log.encode_record). `entry_id` is a hash of kind, click_id and
transaction_id, so a conversion can be credited (and debited) at most once. A torn last
line (an interrupted append) is reported by read_ledger and cut off by the next append:
it was never complete, so nothing acknowledged is lost. A corrupt line elsewhere is an
error. Appends are fsync'd, and ledger_lock keeps two writers from appending at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import LedgerError
from receiver.contract.datadir import DataDir
from receiver.contract.files import fsync_directory, try_lock
from receiver.contract.framing import BadLine, encode_record, iter_lines

log = logging.getLogger("clickledger.pipeline")

LEDGER_DIR = DataDir.LEDGER_DIR
LEDGER_FILE = DataDir.LEDGER_FILE
ENTRY_FIELDS = ("entry_id", "batch_id", "credited_at", "kind", "user_id", "click_id", "transaction_id",
                "amount", "currency", "event_id", "seq")


def ledger_path(data_dir: Path) -> Path:
    return DataDir(data_dir).ledger_path


def entry_id(kind: str, click_id: str, transaction_id: str) -> str:
    """Deterministic id of the one credit (or debit) a conversion can ever have."""
    return hashlib.sha256(f"{kind}\x1f{click_id}\x1f{transaction_id}".encode()).hexdigest()[:32]


@dataclass
class Ledger:
    entries: list[dict[str, Any]]
    lines: list[int]
    torn: BadLine | None
    good_size: int  # bytes up to the end of the last complete line


def read_ledger(path: Path, fields: tuple[str, ...] = ENTRY_FIELDS, what: str = "wallet") -> Ledger:
    """The ledger's entries; a torn last line is reported, a corrupt line elsewhere is an error.
    `fields`: what every entry holds (the wallet's; the points ledger has its own)."""
    if not path.exists():
        return Ledger([], [], None, 0)
    entries, lines, torn = [], [], None
    for line_no, item in iter_lines(path):
        if isinstance(item, BadLine):
            if not item.torn:
                raise LedgerError(f"{path} line {item.line_no} is corrupt (crc32 mismatch): {item.excerpt[:80]!r}. "
                                  f"The {what} ledger is damaged: restore it from a backup before crediting.")
            torn = item
            log.warning("skipping torn last line %d of %s (an interrupted credit job)", item.line_no, path)
            continue
        missing = [f for f in fields if f not in item]
        if missing:
            raise LedgerError(f"{path} line {line_no} lacks {', '.join(missing)}; it is not a {what} entry.")
        entries.append(item)
        lines.append(line_no)
    good_size = torn.offset if torn is not None else path.stat().st_size
    return Ledger(entries, lines, torn, good_size)


@contextmanager
def ledger_lock(directory: Path) -> Iterator[None]:
    """Hold DIRECTORY/.credit.lock: one credit job at a time appends to the ledger."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = try_lock(directory / ".credit.lock")
    if lock is None:
        raise LedgerError(f"another credit job is running on {directory}; wait for it to finish")
    with lock:
        yield


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
        fsync_directory(path.parent)
