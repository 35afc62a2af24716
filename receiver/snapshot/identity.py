"""Segment identity: what a snapshot records of each segment it covers, to tell whether it still matches.

Sealed segments are never rewritten, so the identity reads only 128 KiB of each; a
segment rewritten in place with the same size within one mtime tick, by something that
is not the receiver, would not be noticed (a full CRC of a 6 GB log would cost seconds
at every start).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SegmentId:
    name: str
    size: int
    mtime_ns: int
    inode: int
    sample_crc: int  # CRC-32 of the first and the last SAMPLE_BYTES (the whole file when small)

    def as_list(self) -> list[Any]:
        return [self.name, self.size, self.mtime_ns, self.inode, self.sample_crc]

    @classmethod
    def from_list(cls, items: list[Any]) -> SegmentId:
        name, size, mtime_ns, inode, sample_crc = items
        return cls(str(name), int(size), int(mtime_ns), int(inode), int(sample_crc))


def segment_id(path: Path) -> SegmentId:
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        head = f.read(SAMPLE_BYTES)
        crc = zlib.crc32(head)
        if st.st_size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, st.st_size - SAMPLE_BYTES))
            crc = zlib.crc32(f.read(SAMPLE_BYTES), crc)
    return SegmentId(path.name, st.st_size, st.st_mtime_ns, st.st_ino, crc)
