"""Scanning a sealed segment into its share of the indexes, and writing that share as its sidecar.

DATA/index/segment-NNNNNNNN.idx (a *sidecar*) holds what one sealed segment adds to the
indexes: its clicks (UUID ids as sorted 16-byte keys with 16-byte rows; other ids as a
list), its recorded conversions in log order, its highest seq and its bad lines. A
serving receiver builds it in a child process (`python -m receiver.snapshot SEGMENT
INDEX_DIR`), so the scan does not hold the GIL its request threads need.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from receiver.contract.framing import BadLine, iter_lines, segment_name_of
from receiver.contract.params import pair_key
from receiver.contract.timeutil import parse_utc
from receiver.indexes import NEVER, ROW, Combo, to_micros, uuid_key
from receiver.snapshot.identity import segment_id
from receiver.snapshot.index_file import IndexData, write_index_file

log = logging.getLogger("clickledger.snapshot")

ClickRow = tuple[str, str, str, str | None, str | None, str | None, int | None]  # source..product, expires


def _click_row(fields: dict[str, Any]) -> ClickRow:
    """What Click.from_fields keeps, with expires_at as exact microseconds."""
    expires = fields.get("expires_at")
    return (fields.get("source", "link"), fields["offer_id"], fields["partner_id"], fields.get("affiliate_id"),
            fields.get("user_id"), fields.get("product_id"), to_micros(parse_utc(expires)) if expires else None)


def scan_segment(path: Path) -> IndexData:
    """The indexes' share of one segment, read from its bytes (every line's CRC checked)."""
    ident = segment_id(path)
    clicks: dict[str, ClickRow] = {}
    conversions: list[list[Any]] = []
    bad: list[list[Any]] = []
    top = 0
    for line_no, record in iter_lines(path):
        if isinstance(record, BadLine):
            bad.append([ident.name, line_no, record.torn])
            continue
        top = max(top, record.get("seq", 0))
        kind = record.get("kind")
        fields = record.get("fields") or {}
        if kind == "click" and record.get("result") == "click" and fields.get("click_id"):
            click_id = fields["click_id"]
            clicks.pop(click_id, None)  # a repeated id: the later click replaces the earlier
            clicks[click_id] = _click_row(fields)
        elif kind == "postback" and record.get("result") == "recorded":
            conversions.append([*pair_key(fields["click_id"], fields["transaction_id"]), fields.get("status", "")])
    if not segment_id(path).matches(ident):  # (compressed meanwhile is the same content)
        raise RuntimeError(f"{path} changed while it was read: it is not sealed")
    data = IndexData(covers=[ident], top_seq=top, conversions=conversions, bad_lines=bad)
    combo_ids: dict[Combo, int] = {}
    user_ids: dict[str | None, int] = {None: 0}
    compact: list[tuple[bytes, bytes]] = []
    for click_id, (source, offer, partner, affiliate, user, product, expires) in clicks.items():
        key = uuid_key(click_id) if isinstance(click_id, str) else None
        if key is None:
            data.others.append([click_id, source, offer, partner, affiliate, user, product, expires])
            continue
        combo = (source, offer, partner, affiliate, product)
        c = combo_ids.setdefault(combo, len(combo_ids))
        u = user_ids.setdefault(user, len(user_ids))
        compact.append((key, ROW.pack(c, u, NEVER if expires is None else expires)))
    compact.sort()
    data.keys = b"".join(k for k, _ in compact)
    data.rows = b"".join(r for _, r in compact)
    data.combos = list(combo_ids)
    data.users = list(user_ids)
    return data


def sidecar_path(index_dir: Path, segment_name: str) -> Path:
    """DATA/index/segment-NNNNNNNN.idx, of the segment whose file (either form) is `segment_name`."""
    return index_dir / (segment_name_of(segment_name).removesuffix(".ndjson") + ".idx")


def build_sidecar(segment: Path, index_dir: Path) -> IndexData:
    """Scan a sealed segment and write its sidecar; the data is returned even when the write fails."""
    data = scan_segment(segment)
    try:
        write_index_file(sidecar_path(index_dir, segment.name), data)
    except OSError as exc:  # a derived cache: the next start builds it again
        log.warning("could not write the index sidecar of %s: %s", segment.name, exc)
    return data


def build_sidecar_in_worker(segment: str, index_dir: str) -> IndexData:
    """build_sidecar for a worker process of load_indexes' pool (plain-string arguments pickle small)."""
    return build_sidecar(Path(segment), Path(index_dir))


def build_sidecar_in_child(segment: Path, index_dir: Path, timeout: float = 600.0) -> None:
    """build_sidecar in a child process (`python -m receiver.snapshot SEGMENT INDEX_DIR`).

    A serving receiver calls this from a background thread at each rotation: scanning a
    64 MiB segment is ~1.5 s of Python, which in-process would hold the GIL the request
    threads need. Waiting for a child releases it. Raises OSError or SubprocessError
    (with the child's last words) when no sidecar was written.
    """
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "receiver.snapshot", str(segment), str(index_dir)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise subprocess.SubprocessError(f"the sidecar builder exited {done.returncode}: {said[0]}")
