"""The delivery log DATA/ledger/deliveries.ndjson, and the points ledger DATA/ledger/points.ndjson.

The delivery log is append-only, one checksummed JSON line per record (the log's framing,
receiver.contract.framing), each fsync'd before the forwarder goes on:

- `planned`: a delivery and everything it sends (URL, body, points), written once;
- `attempt`: the intent to send attempt N, written before the request leaves;
- `outcome`: what attempt N got (HTTP status or error) and what follows (the delivery's state,
  its next attempt);
- `stop_endpoint`: an endpoint answered 410 Gone: nothing more is sent to it;
- `reopen`: `forward --resend` or `--replay` asked for a delivery again (a new schedule; its
  endpoint is reopened).

An `attempt` without its `outcome` is an attempt cut short by a crash: it is retried at once
with the same delivery id. A torn last line (a crash mid-write) was never acknowledged: it is cut
off when the log is opened. A corrupt line elsewhere is an error.

The points ledger has one entry per points credit (an approval) and debit (its reversal), with
deterministic ids, read and appended with the wallet ledger's functions.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from pipeline.errors import LedgerError
from pipeline.wallet.ledger import Ledger, append_entries, read_ledger
from receiver.contract.files import fsync_directory
from receiver.contract.framing import BadLine, encode_record, iter_lines

log = logging.getLogger("clickledger.pipeline")

RECORD_KINDS = ("planned", "attempt", "outcome", "stop_endpoint", "reopen")
POINTS_FIELDS = ("entry_id", "recorded_at", "kind", "affiliate", "user_id", "click_id", "transaction_id", "points",
                 "payout_base", "points_per_unit", "seq")


def read_delivery_log(path: Path) -> tuple[list[dict[str, Any]], BadLine | None]:
    """(records, torn last line) of the delivery log; a corrupt line elsewhere is a LedgerError."""
    if not path.exists():
        return [], None
    records, torn = [], None
    for line_no, item in iter_lines(path):
        if isinstance(item, BadLine):
            if not item.torn:
                raise LedgerError(f"{path} line {item.line_no} is corrupt (crc32 mismatch): {item.excerpt[:80]!r}. "
                                  "The delivery log is damaged: restore it from a backup before forwarding.")
            torn = item
            continue
        if item.get("kind") not in RECORD_KINDS or "delivery_id" not in item and item.get("kind") != "stop_endpoint":
            raise LedgerError(f"{path} line {line_no} is not a delivery record: {str(item)[:80]}")
        records.append(item)
    return records, torn


class DeliveryLog:
    """The delivery log open for appending (by one forwarder: it holds DATA/ledger/.forward.lock).
    `records` are all of them, in order; `append` writes and fsyncs, safe from several threads."""

    def __init__(self, path: Path):
        self.path = path
        self.records, torn = read_delivery_log(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if torn is not None:
            log.warning("cutting off torn last line %d of %s (an interrupted forwarder)", torn.line_no, path)
            os.ftruncate(self._fd, torn.offset)
            os.fsync(self._fd)
        if created:
            fsync_directory(path.parent)
        self._lock = threading.Lock()

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = b"".join(encode_record(r) for r in records)
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
            self.records.extend(records)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def read_points(path: Path) -> Ledger:
    return read_ledger(path, POINTS_FIELDS, "points")


def append_points(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append points entries (fsync'd; a torn last line cut off first)."""
    if entries:
        path.parent.mkdir(parents=True, exist_ok=True)
        append_entries(path, read_points(path), entries)
