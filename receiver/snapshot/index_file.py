"""The index file format shared by sidecars and the base: what one holds, and writing and reading it.

A file is MAGIC, a u32 header length, a JSON header (format version, the segments covered,
the small tables), the sorted 16-byte UUID keys, their 16-byte rows, the bucket offsets
(base only) and a u32 CRC-32 of everything before it. A file that fails any check reads
as None, so its caller rebuilds it: a torn, stale or foreign file is never trusted.
Files are written to a temporary name, fsync'd, then renamed, so a crash leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from receiver.contract.files import write_atomically
from receiver.indexes import BUCKETS, KEY_BYTES, ROW_BYTES, Combo
from receiver.snapshot.identity import SegmentId

INDEX_FORMAT_VERSION = 2  # 2: segments identified by their content, in either form (no inode)
MAGIC = b"CLIDX\x00\r\n"  # the \r\n catches a file mangled by newline translation
_U32 = struct.Struct("<I")


@dataclass
class IndexData:
    """The indexes' share of some segments: one (sidecar) or many, merged (base)."""

    covers: list[SegmentId]
    top_seq: int = 0
    keys: bytes = b""  # sorted 16-byte UUID keys
    rows: bytes = b""  # parallel ROW rows: indexes into combos and users, expires
    combos: list[Combo] = field(default_factory=list)
    users: list[str | None] = field(default_factory=lambda: [None])
    # clicks whose id is not a canonical UUID: [click_id, source, offer, partner, affiliate,
    # user, product, expires_us or None], later ones replacing earlier ones
    others: list[list[Any]] = field(default_factory=list)
    conversions: list[list[Any]] = field(default_factory=list)  # [click_id, transaction_id, status], log order
    bad_lines: list[list[Any]] = field(default_factory=list)  # [segment, line_no, torn]
    offsets: Any = None  # bucket offsets (array), only stored in the base

    @property
    def n(self) -> int:
        return len(self.keys) // KEY_BYTES


def _header(data: IndexData) -> dict[str, Any]:
    return {
        "version": INDEX_FORMAT_VERSION,
        "covers": [c.as_list() for c in data.covers],
        "top_seq": data.top_seq,
        "n": data.n,
        "combos": data.combos,
        "users": data.users,
        "others": data.others,
        "conversions": data.conversions,
        "bad_lines": data.bad_lines,
        "has_offsets": data.offsets is not None,
    }


def write_index_file(path: Path, data: IndexData) -> None:
    """Write atomically: temporary file, fsync, rename, fsync of the directory."""
    header = orjson.dumps(_header(data))
    parts = [MAGIC, _U32.pack(len(header)), header, data.keys, data.rows]
    if data.offsets is not None:
        parts.append(data.offsets.tobytes())
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    write_atomically(path, tmp, [*parts, _U32.pack(crc)])



def read_index_file(path: Path) -> IndexData | None:
    """The file's content, or None when it is missing, torn, corrupt or of another version."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(len(MAGIC) + 4)
            if len(prefix) != len(MAGIC) + 4 or prefix[:len(MAGIC)] != MAGIC:
                return None
            (header_len,) = _U32.unpack(prefix[len(MAGIC):])
            raw_header = f.read(header_len)
            crc = zlib.crc32(raw_header, zlib.crc32(prefix))
            header = orjson.loads(raw_header)
            if not isinstance(header, dict) or header.get("version") != INDEX_FORMAT_VERSION:
                return None
            n = int(header["n"])
            keys = f.read(n * KEY_BYTES)
            rows = f.read(n * ROW_BYTES)
            crc = zlib.crc32(rows, zlib.crc32(keys, crc))
            offsets = None
            if header["has_offsets"]:
                raw_offsets = f.read(4 * (BUCKETS + 1))
                crc = zlib.crc32(raw_offsets, crc)
                offsets = array("I")
                offsets.frombytes(raw_offsets)
            trailer = f.read(5)
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
    if len(keys) != n * KEY_BYTES or len(rows) != n * ROW_BYTES or len(trailer) != 4:
        return None
    if _U32.unpack(trailer)[0] != crc:
        return None
    try:
        return IndexData(
            covers=[SegmentId.from_list(c) for c in header["covers"]],
            top_seq=int(header["top_seq"]),
            keys=keys,
            rows=rows,
            combos=[tuple(c) for c in header["combos"]],
            users=list(header["users"]),
            others=header["others"],
            conversions=header["conversions"],
            bad_lines=header["bad_lines"],
            offsets=offsets,
        )
    except (KeyError, TypeError, ValueError):
        return None
