"""Index snapshots: derived caches that let the receiver start without re-reading the log.

The log stays the only source of truth. Everything here can be deleted at any time
(`rm -r DATA/index`) and is rebuilt from the segments at the next start.

DATA/index/segment-NNNNNNNN.idx (a *sidecar*) holds what one sealed segment adds to the
indexes: its clicks (UUID ids as sorted 16-byte keys with 16-byte rows; other ids as a
list), its recorded conversions in log order, its highest seq and its bad lines. A
sidecar is written when its segment is sealed: at rotation (background thread), at a
clean shutdown, or at the next start for a segment that has none (the active segment of
a crashed run), several segments in parallel processes.

DATA/index/base.idx holds the same for a run of the oldest segments, merged, so a start
reads one file instead of merging every sidecar (merging 10M clicks takes a sort, which
pure Python cannot do in seconds; adding a few segments' clicks to sorted arrays can).
It is rewritten in the background after a start that merged anything new.

Every file names the segments it covers with their identity (name, size, mtime, inode,
CRC-32 of the first and last 64 KiB) and carries a format version and a CRC-32 of its
whole content. A file that fails any check is ignored and rebuilt, so a torn, stale or
foreign snapshot can never make a known click unknown or an unknown click known. Files
are written to a temporary name, fsync'd, then renamed, so a crash leaves either the
old file or the new one, never half of one.

Sealed segments are never rewritten, so the identity check reads only 128 KiB of each;
a segment rewritten in place with the same size within one mtime tick, by something
that is not the receiver, would not be noticed (a full CRC of a 6 GB log would cost
seconds at every start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson

from receiver.indexes import (
    BUCKETS,
    KEY_BYTES,
    NEVER,
    ROW,
    ROW_BYTES,
    Click,
    ClickIndex,
    Combo,
    CompactClicks,
    ConversionIndex,
    bucket_offsets,
    from_micros,
    lower_bound,
    to_micros,
    uuid_key,
)
from receiver.log import BadLine, iter_lines, segment_paths
from receiver.timeutil import parse_utc

log = logging.getLogger("clickledger.snapshot")

INDEX_FORMAT_VERSION = 1
MAGIC = b"CLIDX\x00\r\n"  # the \r\n catches a file mangled by newline translation
BASE_NAME = "base.idx"
SAMPLE_BYTES = 64 * 1024
_U32 = struct.Struct("<I")
# Building sidecars in worker processes pays off only past this much log to read.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def index_dir_for(log_dir: Path) -> Path:
    """DATA/index next to DATA/log: outside the log, so nothing that reads segment-*.ndjson sees it."""
    return Path(log_dir).parent / "index"


# ---------------------------------------------------------------- segment identity


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


# ---------------------------------------------------------------- what an index file holds


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
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
            f.write(_U32.pack(crc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


# ---------------------------------------------------------------- building a sidecar from its segment

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
            bad.append([path.name, line_no, record.torn])
            continue
        top = max(top, record.get("seq", 0))
        kind = record.get("kind")
        fields = record.get("fields") or {}
        if kind == "click" and record.get("result") == "click" and fields.get("click_id"):
            click_id = fields["click_id"]
            clicks.pop(click_id, None)  # a repeated id: the later click replaces the earlier
            clicks[click_id] = _click_row(fields)
        elif kind == "postback" and record.get("result") == "recorded":
            conversions.append([fields["click_id"], fields["transaction_id"], fields.get("status", "")])
    if segment_id(path) != ident:
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
    return index_dir / (segment_name.rsplit(".", 1)[0] + ".idx")


def build_sidecar(segment: Path, index_dir: Path) -> IndexData:
    """Scan a sealed segment and write its sidecar; the data is returned even when the write fails."""
    data = scan_segment(segment)
    try:
        write_index_file(sidecar_path(index_dir, segment.name), data)
    except OSError as exc:  # a derived cache: the next start builds it again
        log.warning("could not write the index sidecar of %s: %s", segment.name, exc)
    return data


def _build_in_worker(segment: str, index_dir: str) -> IndexData:
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


# ---------------------------------------------------------------- merging


def merge(base: IndexData | None, runs: list[IndexData]) -> IndexData:
    """One IndexData covering `base` then `runs` in order; later clicks with the same id win.

    Cost: the runs' clicks one by one (a remap, a dict, a sort, a binary search each) plus
    memory copies of the base; so a base of 10M plus a few segments merges in a second.
    """
    base = base or IndexData(covers=[])
    combos = list(base.combos)
    users = list(base.users)
    combo_ids = {c: i for i, c in enumerate(combos)}
    user_ids = {u: i for i, u in enumerate(users)}
    fresh: dict[bytes, bytes] = {}
    for run in runs:
        cmap = [combo_ids.setdefault(c, len(combo_ids)) for c in run.combos]
        umap = [user_ids.setdefault(u, len(user_ids)) for u in run.users]
        keys, rows = run.keys, run.rows
        identity = cmap == list(range(len(cmap))) and umap == list(range(len(umap)))
        for i in range(run.n):
            at = i * KEY_BYTES
            if identity:
                row = rows[at:at + ROW_BYTES]
            else:
                c, u, expires = ROW.unpack_from(rows, at)
                row = ROW.pack(cmap[c], umap[u], expires)
            fresh[keys[at:at + KEY_BYTES]] = row  # sorted below: insertion order does not matter
    combos = list(combo_ids)
    users = list(user_ids)
    new_keys = sorted(fresh)
    if not new_keys:
        keys, rows = base.keys, base.rows
    elif base.n == 0:
        keys = b"".join(new_keys)
        rows = b"".join([fresh[k] for k in new_keys])
    else:
        # Splice the new clicks into the base's sorted arrays: copies of the base between them.
        old_keys, old_rows = memoryview(base.keys), memoryview(base.rows)
        offsets = base.offsets if base.offsets is not None else bucket_offsets(base.keys)
        key_parts: list[Any] = []
        row_parts: list[Any] = []
        prev = 0
        for key in new_keys:
            bucket = (key[0] << 8) | key[1]
            end = offsets[bucket + 1]
            pos = lower_bound(base.keys, key, max(prev, offsets[bucket]), end) if prev <= end else prev
            key_parts.append(old_keys[prev * KEY_BYTES:pos * KEY_BYTES])
            row_parts.append(old_rows[prev * ROW_BYTES:pos * ROW_BYTES])
            key_parts.append(key)
            row_parts.append(fresh[key])
            same = pos < base.n and base.keys[pos * KEY_BYTES:(pos + 1) * KEY_BYTES] == key
            prev = pos + 1 if same else pos  # the same id again: the newer click replaces the base's
        key_parts.append(old_keys[prev * KEY_BYTES:])
        row_parts.append(old_rows[prev * ROW_BYTES:])
        keys, rows = b"".join(key_parts), b"".join(row_parts)
    others: dict[Any, list[Any]] = {o[0]: o for o in base.others}
    conversions = list(base.conversions)
    bad = list(base.bad_lines)
    top = base.top_seq
    covers = list(base.covers)
    for run in runs:
        for other in run.others:
            others.pop(other[0], None)
            others[other[0]] = other
        conversions.extend(run.conversions)
        bad.extend(run.bad_lines)
        top = max(top, run.top_seq)
        covers.extend(run.covers)
    return IndexData(covers=covers, top_seq=top, keys=keys, rows=rows, combos=combos, users=users,
                     others=list(others.values()), conversions=conversions, bad_lines=bad,
                     offsets=base.offsets if keys is base.keys and base.offsets is not None
                     else bucket_offsets(keys))


def to_indexes(data: IndexData) -> tuple[ClickIndex, ConversionIndex]:
    compact = CompactClicks(data.keys, data.rows, data.combos, data.users, data.offsets)
    others = {
        o[0]: Click(o[0], o[1], o[2], o[3], o[4], o[5], o[6], None if o[7] is None else from_micros(o[7]))
        for o in data.others
    }
    recorded: dict[tuple[str, str], str] = {}
    for click_id, transaction_id, status in data.conversions:
        recorded.setdefault((click_id, transaction_id), status)
    return ClickIndex(compact, others), ConversionIndex(recorded)


# ---------------------------------------------------------------- start


@dataclass
class Loaded:
    clicks: ClickIndex
    conversions: ConversionIndex
    top_seq: int
    data: IndexData
    base_stale: bool  # the base does not cover every segment: worth rewriting
    built: int  # sidecars built from their segments during this load
    reused_base: int  # segments covered by a valid base
    sidecars: int  # valid sidecars read
    built_seconds: float  # reading the base and sidecars, and building the missing sidecars
    seconds: float  # the whole load

    def describe(self) -> str:
        return (f"index: {len(self.clicks):,} clicks, {len(self.conversions):,} conversions, top seq "
                f"{self.top_seq:,}, in {self.seconds:.2f} s (base covering {self.reused_base} segments, "
                f"{self.sidecars} sidecars read, {self.built} built from their segments; "
                f"{self.built_seconds:.2f} s before merging)")


def _valid(data: IndexData | None, idents: list[SegmentId]) -> bool:
    return data is not None and data.covers == idents


def load_indexes(log_dir: Path, index_dir: Path | None = None, *, workers: int | None = None,
                 on_bad: Callable[[list[Any]], None] | None = None) -> Loaded:
    """The indexes of the whole log, from the base and sidecars where they match, else from the segments.

    Every segment present is treated as sealed: the caller holds the writer lock, and a
    writer never appends to a segment it did not open.
    """
    started = time.perf_counter()
    log_dir = Path(log_dir)
    index_dir = Path(index_dir) if index_dir is not None else index_dir_for(log_dir)
    segments = segment_paths(log_dir)
    idents = [segment_id(p) for p in segments]
    base = read_index_file(index_dir / BASE_NAME)
    covered = 0
    if base is not None and base.offsets is not None and base.covers == idents[:len(base.covers)]:
        covered = len(base.covers)
    else:
        base = None
    runs: list[IndexData | None] = []
    missing: list[int] = []
    for i in range(covered, len(segments)):
        sidecar = read_index_file(sidecar_path(index_dir, segments[i].name))
        if _valid(sidecar, [idents[i]]):
            runs.append(sidecar)
        else:
            runs.append(None)
            missing.append(i)
    if missing:
        sizes = sum(idents[i].size for i in missing)
        count = min(workers if workers is not None else (os.cpu_count() or 1), len(missing))
        if count > 1 and sizes >= PARALLEL_MIN_BYTES:
            # JSON parsing is the cost: a process per core. spawn, not fork: the caller may have threads.
            with ProcessPoolExecutor(count, mp_context=get_context("spawn")) as pool:
                built = list(pool.map(_build_in_worker, [str(segments[i]) for i in missing],
                                      [str(index_dir)] * len(missing)))
        else:
            built = [build_sidecar(segments[i], index_dir) for i in missing]
        for i, data in zip(missing, built, strict=True):
            runs[i - covered] = data
    built_seconds = time.perf_counter() - started
    complete = [r for r in runs if r is not None]
    fresh = sum(r.n + len(r.others) + len(r.conversions) for r in complete)
    merged = merge(base, complete) if complete or base is None else base
    if on_bad is not None:
        for bad in merged.bad_lines:
            on_bad(bad)
    clicks, conversions = to_indexes(merged)
    # Rewriting the base costs a write of the whole index, so only when it saves real work at the
    # next start: many new clicks, or many small sidecars to read (every start seals a segment).
    stale = base is None or fresh * 100 >= max(base.n, 1) or len(complete) >= 16
    return Loaded(clicks, conversions, merged.top_seq, merged, base_stale=stale, built=len(missing),
                  reused_base=covered, sidecars=len(complete) - len(missing),
                  built_seconds=built_seconds, seconds=time.perf_counter() - started)


def write_base(index_dir: Path, data: IndexData) -> None:
    try:
        write_index_file(index_dir / BASE_NAME, data)
    except OSError as exc:
        log.warning("could not write the index base: %s", exc)


if __name__ == "__main__":  # build_sidecar_in_child's child: python -m receiver.snapshot SEGMENT INDEX_DIR
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m receiver.snapshot SEGMENT INDEX_DIR")
    build_sidecar(Path(sys.argv[1]), Path(sys.argv[2]))
