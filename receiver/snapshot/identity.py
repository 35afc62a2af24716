"""Segment identity: what a snapshot records of each segment it covers, to tell whether it still matches.

A segment is identified by its content, so that compressing it (receiver.compression,
which keeps the mtime and verifies the bytes) leaves its sidecar and the base valid: its
name (`segment-NNNNNNNN.ndjson` in either form), the size of its lines, its mtime, the
CRC-32 of its first 64 KiB, and by form the CRC-32 of its last 64 KiB (plain) or the zstd
frame's checksum of the whole content (compressed); see receiver.contract.framing.segment_stat.
Two identities match when every part both have is equal.

Sealed segments are never rewritten, so this reads only the ends of each; a plain segment
rewritten in place with the same size, start and end within one mtime tick, by something
that is not the receiver, would not be noticed (a full CRC of a 6 GB log would cost seconds
at every start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver.contract.framing import SAMPLE_BYTES, segment_stat


@dataclass(frozen=True)
class SegmentId:
    name: str  # the segment's name, whichever form its file is in
    size: int  # bytes of its lines (not of the compressed file)
    mtime_ns: int
    head_crc: int  # CRC-32 of its first SAMPLE_BYTES
    # Known of one form each, so not part of `==` (the same segment in either form is equal);
    # `matches` compares them where both are known.
    tail_crc: int | None = field(default=None, compare=False)  # CRC-32 of its last SAMPLE_BYTES: plain form
    frame_checksum: int | None = field(default=None, compare=False)  # zstd's checksum of it: compressed form

    def matches(self, other: SegmentId) -> bool:
        """The same segment content, as far as both identities tell."""
        if self != other:
            return False
        return all(mine is None or theirs is None or mine == theirs
                   for mine, theirs in ((self.tail_crc, other.tail_crc),
                                        (self.frame_checksum, other.frame_checksum)))

    def as_list(self) -> list[Any]:
        return [self.name, self.size, self.mtime_ns, self.head_crc, self.tail_crc, self.frame_checksum]

    @classmethod
    def from_list(cls, items: list[Any]) -> SegmentId:
        name, size, mtime_ns, head_crc, tail_crc, frame_checksum = items
        return cls(str(name), int(size), int(mtime_ns), int(head_crc),
                   None if tail_crc is None else int(tail_crc),
                   None if frame_checksum is None else int(frame_checksum))


def same_segments(recorded: list[SegmentId], current: list[SegmentId]) -> bool:
    """Whether a snapshot's `recorded` segments are the `current` ones, one for one."""
    return len(recorded) == len(current) and all(r.matches(c) for r, c in zip(recorded, current, strict=True))


def segment_id(path: Path) -> SegmentId:
    stat = segment_stat(path)
    return SegmentId(stat.name, stat.size, stat.mtime_ns, stat.head_crc, stat.tail_crc, stat.frame_checksum)


__all__ = ["SAMPLE_BYTES", "SegmentId", "same_segments", "segment_id"]
