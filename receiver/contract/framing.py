"""Segment framing: how records sit in DATA/log/segment-NNNNNNNN.ndjson, and how to read them back.

One JSON object per line (NDJSON), so DuckDB's read_ndjson and Polars' scan_ndjson read a
segment directly. Each line starts with its own checksum:

    {"crc32":"1a2b3c4d","v":1,"seq":42,...}\\n

`crc32` is the CRC-32 (zlib) of the line with that first member removed, i.e. of
b"{" + line[CRC_PREFIX_LEN:] without the newline, so a reader checks a record from its
bytes alone, without re-serialising it.

Segments sort by name in the order they were opened. A torn record (crash, disk full) can
only be the last line of a segment (see receiver.log.SegmentWriter); readers skip it, and
report every line that fails its checksum as a `BadLine`.

A sealed segment (one no writer will append to again) is kept compressed, as
segment-NNNNNNNN.ndjson.zst: one zstd frame holding exactly the plain segment's bytes,
lines and checksums unchanged, its content size in the frame header, and the plain file's
mtime (receiver.compression writes it). Each segment has one *current form*: the plain
file while it exists, else the compressed one. The compressed file is published (renamed
into place) only once verified, and the plain one removed only after that, so a reader
that takes the plain file when both exist always reads one complete copy of every
segment. `segment_paths` lists the current forms, `read_segment` reads either (and the
compressed one when the plain one vanished since it was listed), and everything that
identifies a segment (`segment_name_of`, `segment_stat`) gives the same answer for both.

The writer (receiver.log), every reader (the receiver's indexes, the pipeline's staging,
the wallet ledger) and the offline generator use these definitions; nothing else knows
the byte layout.
"""

from __future__ import annotations

import itertools
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import zstandard

# ---------------------------------------------------------------- the line

CRC_MEMBER_FORMAT = b'{"crc32":"%08x",'  # a line's start: `%` with the checksum gives it
CRC_HEAD = b'{"crc32":"'  # what every line starts with, before its 8 hex digits
CRC_DIGITS = slice(len(CRC_HEAD), len(CRC_HEAD) + 8)  # where the digits stand in a line
CRC_CLOSE = b'",'  # what follows the digits
CRC_PREFIX_LEN = len(CRC_MEMBER_FORMAT % 0)  # 20: the checksum covers b"{" + line[CRC_PREFIX_LEN:]
CRC_SEED = zlib.crc32(b"{")  # zlib.crc32(rest, CRC_SEED) is the checksum of b"{" + rest, without a copy
_CRC_DIGITS_RE = re.compile(rb"[0-9a-f]{8}")
NEWLINE = b"\n"


def line_head(rest: bytes | memoryview) -> bytes:
    """The crc32 member that starts a line whose remainder (after it, without the newline) is `rest`."""
    return CRC_MEMBER_FORMAT % zlib.crc32(rest, CRC_SEED)


def line_heads(rests: Iterable[bytes]) -> list[bytes]:
    """`line_head` of each remainder, in one C loop (no Python bytecode per line): for writers
    that format lines in bulk, such as the offline generator."""
    return list(map(CRC_MEMBER_FORMAT.__mod__, map(zlib.crc32, rests, itertools.repeat(CRC_SEED))))


def frame_json(body: bytes) -> bytes:
    """The log line of an already serialised JSON object `{...}` with at least one member."""
    if body[:1] != b"{" or body[1:].lstrip()[:1] == b"}":  # `{"crc32":"...",}` would not be JSON
        raise ValueError("a log record must be a compact JSON object with at least one member")
    rest = body[1:]
    return line_head(rest) + rest + NEWLINE


def unframe(line: bytes) -> bytes:
    """A line's record as JSON without its crc32 member (`{"v":1,...}`), unchecked; the inverse
    of `frame_json` for an intact line (see `check_line`)."""
    return b"{" + line[CRC_PREFIX_LEN:].rstrip(NEWLINE)


# A JSON number literal (RFC 8259): what a JSONNumber may hold, so a record can never be
# written as invalid JSON through one.
_JSON_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)


class JSONNumber(str):
    """A JSON number kept as the exact text it was sent as (the string's value).

    A request's JSON body may carry numbers no float holds exactly: an integer beyond 64
    bits (a transaction id such as 18446744073709551617) or a decimal with more digits than
    a double keeps. Read as floats, two different ids became one. A JSONNumber keeps the
    sent text: read as a parameter (an id, an amount) it is that text, and a log record
    writes it back as the same JSON number, unquoted (`encode_record`). Any other JSON
    encoder sees a string holding the number's text.
    """

    __slots__ = ()

    def __new__(cls, text: str) -> JSONNumber:
        if not _JSON_NUMBER_RE.fullmatch(text):
            raise ValueError(f"not a JSON number: {text[:40]!r}")
        return super().__new__(cls, text)

    def __repr__(self) -> str:
        return f"JSONNumber({str.__repr__(self)})"


def _encode_other(value: Any) -> Any:
    """orjson's fallback, called only for what it does not write itself: with
    OPT_PASSTHROUGH_SUBCLASS, subclasses of str, int, dict and list. An ordinary record
    (plain strings, numbers, dicts) never gets here and pays nothing for it."""
    if value.__class__ is JSONNumber:
        return orjson.Fragment(str(value))  # the number as sent, written as JSON, unquoted
    for base in (str, int, dict, list):
        if isinstance(value, base):
            return base(value)  # any other subclass: as its base type, as orjson would write it
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_RECORD_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS


def encode_record(record: dict[str, Any]) -> bytes:
    """One log line: the record as JSON with its crc32 as first member, newline-terminated.

    A `JSONNumber` anywhere in it is written as the number text it holds."""
    if not record:  # `{"crc32":"...",}` would not be JSON: no reader could ever read it back
        raise ValueError("a log record needs at least one member")
    rest = orjson.dumps(record, default=_encode_other, option=_RECORD_OPTIONS)[1:]
    return line_head(rest) + rest + NEWLINE


def check_line(line: bytes) -> dict[str, Any] | None:
    """The record of a complete, intact line, or None when it is torn or corrupt."""
    line = line.rstrip(NEWLINE)
    if len(line) <= CRC_PREFIX_LEN or not line.startswith(CRC_HEAD):
        return None
    digits = line[CRC_DIGITS]
    if not _CRC_DIGITS_RE.fullmatch(digits):  # int(x, 16) would also take "A", " 1", "+1", "0_1"
        return None
    if line[CRC_DIGITS.stop:CRC_PREFIX_LEN] != CRC_CLOSE or \
            zlib.crc32(line[CRC_PREFIX_LEN:], CRC_SEED) != int(digits, 16):
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


# ---------------------------------------------------------------- segments

COMPRESSED_SUFFIX = ".zst"
# Every segment file, in either form (for DuckDB's read_json and Polars' scan_ndjson, which
# both decompress a .zst by its name). While a segment is being compressed both of its
# forms exist for a moment, so a glob can read it twice: code reads `segment_paths`.
SEGMENT_GLOB = "segment-*.ndjson*"
SEGMENT_RE = re.compile(r"^segment-(\d{8})\.ndjson(\.zst)?$")
SAMPLE_BYTES = 64 * 1024  # what `segment_stat` reads of a segment's start
_FRAME_HEADER_MAX = 18  # bytes of a zstd frame header at most (ZSTD_FRAMEHEADERSIZE_MAX)


def segment_name(number: int) -> str:
    """The name of segment `number` (1, 2, ...): `segment-00000001.ndjson`; its compressed form
    adds `.zst`. A segment is known by this name in either form (staged rows, snapshots)."""
    if not 0 < number < 10**8:
        raise ValueError(f"a segment number is from 1 to 99999999, got {number}")
    return f"segment-{number:08d}.ndjson"


def segment_number(path: str | os.PathLike[str]) -> int:
    """The number in a segment's file name (either form); ValueError for a file that is not a segment."""
    match = SEGMENT_RE.match(Path(path).name)
    if match is None:
        raise ValueError(f"{Path(path).name!r} is not a log segment name (segment-NNNNNNNN.ndjson[.zst])")
    return int(match.group(1))


def segment_name_of(path: str | os.PathLike[str]) -> str:
    """The name of the segment a file holds, whichever form it is in: `segment-00000001.ndjson`."""
    return segment_name(segment_number(path))


def is_compressed(path: str | os.PathLike[str]) -> bool:
    return Path(path).name.endswith(COMPRESSED_SUFFIX)


def plain_path(path: str | os.PathLike[str]) -> Path:
    """The plain form's path of the segment at `path` (either form)."""
    path = Path(path)
    return path.with_name(segment_name_of(path))


def compressed_path(path: str | os.PathLike[str]) -> Path:
    """The compressed form's path of the segment at `path` (either form)."""
    path = Path(path)
    return path.with_name(segment_name_of(path) + COMPRESSED_SUFFIX)


def segment_paths(log_dir: str | os.PathLike[str]) -> list[Path]:
    """Each segment's current form, in append order (names sort in the order segments were
    opened): the plain file while it exists, else the compressed one."""
    directory = Path(log_dir)
    if not directory.is_dir():
        return []
    current: dict[int, Path] = {}
    for entry in os.scandir(directory):
        match = SEGMENT_RE.match(entry.name)
        if match is not None:
            number = int(match.group(1))
            if match.group(2) is None or number not in current:  # the plain form wins
                current[number] = directory / entry.name
    return [current[n] for n in sorted(current)]


# ---------------------------------------------------------------- reading segments


@dataclass(frozen=True)
class BadLine:
    """A line that failed its checksum: `torn` when it is the unterminated last line of its segment."""

    segment: Path
    line_no: int
    offset: int
    torn: bool
    excerpt: bytes


EXCERPT_BYTES = 120  # how much of a bad line a BadLine keeps


class DamagedSegmentError(ValueError):
    """A compressed segment that does not decompress whole; `readable` holds the bytes before
    the damage (the lines there are still checked by their CRC like any others)."""

    def __init__(self, path: Path, reason: str, readable: bytes):
        self.path = path
        self.readable = readable
        super().__init__(f"{path.name} cannot be decompressed past byte {len(readable):,} of its "
                         f"lines: {reason}")


def _open_current(path: Path):  # noqa: ANN202 - a binary file object
    """Open the segment at `path`; a plain path whose file is gone was compressed meanwhile
    (its compressed form is published before the plain one is removed)."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        if is_compressed(path) or not SEGMENT_RE.match(path.name):  # (iter_lines reads the ledger too)
            raise
        return open(compressed_path(path), "rb")


def _decompress(path: Path, raw: bytes) -> bytes:
    try:  # one frame with its content size, as receiver.compression writes: one allocation
        return zstandard.ZstdDecompressor().decompress(raw, allow_extra_data=False)
    except zstandard.ZstdError:
        pass
    # several frames, no content size (`zstd` run on a stream), or damage: frame by frame, in
    # steps, so that what decompressed before any damage is kept
    chunks: list[bytes] = []
    pos, step = 0, 1 << 17
    while pos < len(raw):
        frame = zstandard.ZstdDecompressor().decompressobj()
        try:
            while not frame.eof and pos < len(raw):
                chunks.append(frame.decompress(raw[pos:pos + step]))
                pos = min(pos + step, len(raw))
        except zstandard.ZstdError as exc:
            raise DamagedSegmentError(path, str(exc), b"".join(chunks)) from exc
        if not frame.eof:
            raise DamagedSegmentError(path, "the zstd frame is cut short", b"".join(chunks))
        pos -= len(frame.unused_data)
    return b"".join(chunks)


def read_segment(path: str | os.PathLike[str]) -> bytes:
    """A segment's bytes, its lines as written, from either form.

    Raises DamagedSegmentError for a compressed file that does not decompress whole (its
    zstd checksum included); `load_segment` gives the lines before the damage instead.
    """
    path = Path(path)
    with _open_current(path) as f:
        raw = f.read()
        name = f.name
    return _decompress(Path(name), raw) if is_compressed(name) else raw


def load_segment(path: Path) -> tuple[bytes, BadLine | None]:
    """(bytes, damage) of one segment: its bytes, or for a damaged compressed segment the whole
    lines before the damage and a BadLine (not torn: corrupt) standing for everything after."""
    try:
        return read_segment(path), None
    except DamagedSegmentError as exc:
        readable = exc.readable[:exc.readable.rfind(NEWLINE) + 1]
        line_no = readable.count(NEWLINE) + 1
        return readable, BadLine(path, line_no, len(readable), False,
                                 f"[damaged zstd frame: {exc}]".encode()[:EXCERPT_BYTES])


@dataclass(frozen=True)
class SegmentStat:
    """What identifies a segment's content, read from its ends: its name, the size of its lines
    (not of the compressed file), its mtime (the compressed file keeps the plain one's), the
    CRC-32 of its first SAMPLE_BYTES; and, by form, the CRC-32 of its last SAMPLE_BYTES
    (plain) or the zstd frame's checksum of its whole content (compressed), which only a
    file of the same form can be compared with."""

    name: str
    size: int
    mtime_ns: int
    head_crc: int
    tail_crc: int | None = None  # plain form
    frame_checksum: int | None = None  # compressed form


def segment_stat(path: str | os.PathLike[str]) -> SegmentStat:
    """The segment's SegmentStat, reading at most 128 KiB of it: ~1 ms in either form."""
    path = Path(path)
    name = segment_name_of(path)
    with _open_current(path) as f:
        st = os.fstat(f.fileno())
        if not is_compressed(f.name):
            head = f.read(SAMPLE_BYTES)
            f.seek(max(SAMPLE_BYTES, st.st_size - SAMPLE_BYTES))
            return SegmentStat(name, st.st_size, st.st_mtime_ns, zlib.crc32(head), tail_crc=zlib.crc32(f.read()))
        try:
            params = zstandard.get_frame_parameters(f.read(_FRAME_HEADER_MAX))
            size, has_checksum = params.content_size, params.has_checksum
        except zstandard.ZstdError:
            size, has_checksum = zstandard.CONTENTSIZE_UNKNOWN, False
        checksum = None
        if has_checksum and st.st_size >= 4:
            f.seek(st.st_size - 4)
            checksum = int.from_bytes(f.read(4), "little")
        f.seek(0)
        if size == zstandard.CONTENTSIZE_UNKNOWN:  # not written by us: the whole file tells
            data, _ = load_segment(Path(f.name))
            return SegmentStat(name, len(data), st.st_mtime_ns, zlib.crc32(data[:SAMPLE_BYTES]),
                               frame_checksum=checksum)
        head = b""
        reader = zstandard.ZstdDecompressor().stream_reader(f, read_size=16 * 1024)
        try:
            while len(head) < SAMPLE_BYTES and (chunk := reader.read(SAMPLE_BYTES - len(head))):
                head += chunk
        except zstandard.ZstdError:
            pass  # damaged near its start: the head read so far identifies it
    return SegmentStat(name, size, st.st_mtime_ns, zlib.crc32(head), frame_checksum=checksum)


# ---------------------------------------------------------------- reading lines


def iter_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """(line number, record or BadLine) for every non-blank line of one segment (either form), in order."""
    data, damage = load_segment(path)
    offset, line_no, size = 0, 0, len(data)
    while offset < size:
        end = data.find(NEWLINE, offset)
        terminated = end != -1
        if not terminated:
            end = size
        line_no += 1
        line = data[offset:end]
        record = check_line(line) if terminated else None
        if record is not None:
            yield line_no, record
        elif line.strip():
            yield line_no, BadLine(path, line_no, offset, not terminated, line[:EXCERPT_BYTES])
        offset = end + 1
    if damage is not None:
        yield damage.line_no, damage


def check_lines(path: Path, data: bytes) -> tuple[list[int], list[BadLine]]:
    """(numbers of the intact lines, bad lines) of one segment's bytes, as `iter_lines` judges
    them, without parsing the JSON (the writer only ever checksums valid JSON): for readers
    that parse the intact lines in bulk afterwards (the pipeline's staging).

    Comparing the canonical `%08x` text of the computed checksum with the line's digits is
    check_line's digit rule and comparison in one step; a memoryview avoids copying lines.
    Written for speed: it runs once per line of the log.
    """
    good: list[int] = []
    bad: list[BadLine] = []
    crc32, view, find, size = zlib.crc32, memoryview(data), data.find, len(data)
    head, close, fmt, seed = CRC_HEAD, CRC_CLOSE, CRC_MEMBER_FORMAT[len(CRC_HEAD):-len(CRC_CLOSE)], CRC_SEED
    digits_at, close_at, prefix = CRC_DIGITS.start, CRC_DIGITS.stop, CRC_PREFIX_LEN
    offset, line_no = 0, 0
    while offset < size:
        end = find(NEWLINE, offset)
        terminated = end != -1
        if not terminated:
            end = size
        line_no += 1
        if (terminated and end - offset > prefix and data.startswith(head, offset)
                and data[offset + close_at:offset + prefix] == close
                and fmt % crc32(view[offset + prefix:end], seed) == data[offset + digits_at:offset + close_at]):
            good.append(line_no)
        elif data[offset:end].strip():
            bad.append(BadLine(path, line_no, offset, not terminated, data[offset:min(end, offset + EXCERPT_BYTES)]))
        offset = end + 1
    return good, bad


def iter_segment(path: Path, on_bad: Callable[[BadLine], None] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the intact records of one segment; report each bad line to `on_bad`."""
    for _, item in iter_lines(path):
        if isinstance(item, BadLine):
            if on_bad is not None:
                on_bad(item)
        else:
            yield item


def iter_log(log_dir: str | os.PathLike[str], on_bad: Callable[[BadLine], None] | None = None
             ) -> Iterator[dict[str, Any]]:
    """Yield the intact records of every segment, in append order."""
    for path in segment_paths(log_dir):
        yield from iter_segment(path, on_bad)


def last_seq(log_dir: str | os.PathLike[str]) -> int:
    """The highest seq in the log (0 for an empty log), read from the newest segments' tails."""
    for path in reversed(segment_paths(log_dir)):
        best = 0
        for record in iter_segment(path):
            best = max(best, int(record.get("seq", 0)))
        if best:
            return best
    return 0
