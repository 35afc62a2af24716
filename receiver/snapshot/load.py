"""The start-up loader: the indexes of the whole log from the base and sidecars that still match.

DATA/index/base.idx holds the merged share of a run of the oldest segments, so a start
reads one file instead of merging every sidecar. Sidecars missing or stale are built
from their segments (several in parallel processes when there is much to read), and the
base is worth rewriting (write_base, in the background) after a start that merged much.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from receiver.contract.datadir import DataDir
from receiver.contract.framing import segment_paths
from receiver.indexes import Click, ClickIndex, CompactClicks, ConversionIndex, from_micros
from receiver.snapshot.identity import SegmentId, same_segments, segment_id
from receiver.snapshot.index_file import IndexData, read_index_file, write_index_file
from receiver.snapshot.merge import merge
from receiver.snapshot.scan import build_sidecar, build_sidecar_in_worker, sidecar_path

log = logging.getLogger("clickledger.snapshot")

BASE_NAME = "base.idx"
# Building sidecars in worker processes pays off only past this much log to read.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def index_dir_for(log_dir: Path) -> Path:
    """DATA/index next to DATA/log: outside the log, so nothing that reads the segments sees it."""
    return DataDir(Path(log_dir).parent).index_dir


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
    return data is not None and same_segments(data.covers, idents)


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
    if base is not None and base.offsets is not None and same_segments(base.covers, idents[:len(base.covers)]):
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
                built = list(pool.map(build_sidecar_in_worker, [str(segments[i]) for i in missing],
                                      [str(index_dir)] * len(missing)))
        else:
            built = [build_sidecar(segments[i], index_dir) for i in missing]
        for i, data in zip(missing, built, strict=True):
            runs[i - covered] = data
    built_seconds = time.perf_counter() - started
    complete = [r for r in runs if r is not None]
    fresh = sum(r.n + len(r.others) + len(r.conversions) for r in complete)
    merged = merge(base, complete) if complete or base is None else base
    # each segment as it is now: a segment compressed since its sidecar was built matched it by
    # content; the base written from this data records its current form's identity
    merged.covers = idents
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
