"""`clickledger simulate --offline`: a large, valid event log written directly, without HTTP.

The records must be exactly what the receiver would have written, so they are not
invented here: a few days of the simulator's plan (every dialect, refusal and follow-up
it knows) are first sent through the real receiver in process (`history.send_day`, one
request at a time), with seeded click and event ids and a simulated clock. Those records
are the *templates* (`clickledger.simulator.templates`); each generated day is a template
with fresh ids and its dates moved, and writev of the pieces makes it fast.

The days: a new log's events are spread evenly over the `days` days (90 by default) that
end on `end` (default: today, UTC), as a network's last three months; an appended part
goes on over the day(s) after the log's last. A day holds several copies of a template,
each over the day's hours, so within a day `received_at` does not grow with `seq` as in
a live log (every copy's clicks, postbacks and their times still go together).

The segments are sealed once written, and written in their compressed form, as a receiver
compresses its sealed segments (segment-NNNNNNNN.ndjson.zst, receiver.compression): each is
gathered in memory and compressed in a second thread while the next one is formatted
(zstd releases the GIL), so no plain file is written only to be removed; `compress=False`
writes plain segments.
Same seed, same arguments, same `end`: byte-identical files.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from clickledger.simulator.history import send_day
from clickledger.simulator.plan import load, plan_traffic
from clickledger.simulator.summary import SimulationSummary
from clickledger.simulator.templates import (
    CLICK_SHARE,
    MIXES,
    compile_template,
    day_lines,
    day_values,
)
from receiver.compression import job_lock, recover, write_compressed_segment
from receiver.contract.datadir import DataDir
from receiver.contract.files import try_lock
from receiver.contract.framing import (
    CRC_PREFIX_LEN,
    iter_segment,
    read_segment,
    segment_name,
    segment_number,
    segment_paths,
)
from receiver.log import DEFAULT_SEGMENT_BYTES, WRITER_LOCK_FILE, LogLockedError, SegmentWriter

TEMPLATE_DAY = date(2024, 1, 1)  # the day templates are captured on (their dates are moved from it)
DAYS = 90  # a new log spreads its events over this many days, ending on `end`
TEMPLATES = 3  # distinct days of traffic; more gives more variety, costs ~1 s each to capture
_NEWLINE = b"\n"
# buffers per writev, a multiple of 3 (crc32 member, rest, newline of a line) within IOV_MAX
_IOV = min(1020, os.sysconf("SC_IOV_MAX") // 3 * 3)


@dataclass
class OfflineSummary:
    """What `generate_log` wrote."""

    out: Path
    events: int = 0
    segments: list[Path] = field(default_factory=list)
    first_seq: int = 0
    last_seq: int = 0
    first_day: date = TEMPLATE_DAY
    last_day: date = TEMPLATE_DAY
    by_kind: Counter[str] = field(default_factory=Counter)  # "kind result", e.g. "postback recorded"
    seconds: float = 0.0
    plain_bytes: int = 0  # the segments' lines
    compressed_bytes: int = 0  # the compressed segments on disk (0 when not compressed)
    compress_wait_seconds: float = 0.0  # waiting for the last compressions after the last write

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        top = ", ".join(f"{k} {n:,}" for k, n in self.by_kind.most_common(8))
        disk = (f"{self.compressed_bytes / 2**20:,.0f} MiB compressed ({self.compressed_bytes / max(1, self.events):.0f} "
                f"bytes/event, {self.compress_wait_seconds:.1f} s waited for the last compression)"
                if self.compressed_bytes else "plain")
        return (f"clickledger simulate --offline: {self.events:,} events (seq {self.first_seq:,}.."
                f"{self.last_seq:,}) in {len(self.segments)} new segment(s) of {self.out / 'log'}, days "
                f"{self.first_day}..{self.last_day}, {self.seconds:.1f} s ({self.events_per_second:,.0f} "
                f"events/s); {self.plain_bytes / 2**20:,.0f} MiB of lines, {disk}\n  {top}")



# ---------------------------------------------------------------- capturing templates


def _seeded_ids(rng: random.Random) -> Callable[[], str]:
    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return new_id


def capture_day(config_dir: Path, *, clicks: int, seed: int, day: date) -> list[bytes]:
    """One day of planned traffic sent through the real receiver in process: its log lines.

    Sent one request at a time (the live simulator uses threads, whose interleaving is
    not reproducible) with seeded ids and a clock walking through `day`.
    """
    config, keys = load(config_dir)
    plan = plan_traffic(config, keys, clicks, seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="clickledger-template-") as tmp:
        data = DataDir(tmp)
        data.config_path.write_bytes(DataDir(config_dir).config_path.read_bytes())
        # no fsync: these records are scratch, and a day costs thousands of appends
        writer = SegmentWriter(data.log_dir, fsync=lambda fd: None)
        send_day(data.root, plan, datetime(day.year, day.month, day.day, tzinfo=UTC),
                 SimulationSummary("templates", seed, clicks, planned=len(plan)), threads=1,
                 deadline=math.inf, writer=writer, new_click_id=_seeded_ids(rng),
                 new_event_id=_seeded_ids(rng))
        return [line for path in segment_paths(data.log_dir) for line in read_segment(path).splitlines()]


# ---------------------------------------------------------------- writing days


def _write_lines(fd: int, heads: list[bytes], bodies: list[bytes]) -> None:
    """Append the lines to the file `fd` with writev, no copy of them in Python."""
    pieces = [_NEWLINE] * (3 * len(heads))
    pieces[0::3], pieces[1::3] = heads, bodies
    for start in range(0, len(pieces), _IOV):
        chunk = pieces[start:start + _IOV]
        done = os.writev(fd, chunk)
        if done < sum(map(len, chunk)):  # a short write (a signal, a full disk): the rest plainly
            rest = memoryview(b"".join(chunk))[done:]
            while rest:
                rest = rest[os.write(fd, rest):]


# ---------------------------------------------------------------- the log directory


def _existing(log_dir: Path) -> tuple[int, int, date | None, date | None]:
    """(last segment number, last seq, day of the first record, day of the last record) of an existing log."""
    paths = segment_paths(log_dir)
    if not paths:
        return 0, 0, None, None
    number = segment_number(paths[-1])
    first_day = next((_day(record) for path in paths for record in iter_segment(path)), None)
    for path in reversed(paths):
        last = None
        for record in iter_segment(path):
            last = record
        if last is not None:
            return number, int(last["seq"]), first_day, _day(last)
    return number, 0, None, None


def _day(record: dict) -> date:
    return date.fromisoformat(str(record["received_at"])[:10])


def _day_of(copy: int, copies: int, days: int) -> int:
    """The day (0..days-1) of template copy `copy` of `copies`: evenly spread, the last on the last day."""
    if copies >= days:
        return copy * days // copies  # each day gets copies // days or one more
    return copy * (days - 1) // max(1, copies - 1)  # fewer copies than days: from the first to the last


def _copies(templates: list, events: int) -> int:
    """How many template copies (the first `events` lines of them, in turn) `events` take."""
    copies, left = 0, events
    while left > 0:
        left -= len(templates[copies % len(templates)].lines)
        copies += 1
    return copies


def template_clicks(events: int) -> int:
    """Clicks per template copy: more for a bigger log; capped because a template costs ~0.4 ms
    per request to capture (a 10M-event log is ~2,000 copies, ~22 a day over 90 days)."""
    return max(40, min(1500, events // 6000))


def generate_log(out: Path, events: int, seed: int = 1, *, append: bool = False,
                 clicks_per_day: int | None = None, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 mix: str = "all", end: date | None = None, days: int | None = None,
                 compress: bool = True) -> OfflineSummary:
    """Write `events` records as log segments of `out`/log (plus config.toml and fx_rates.csv).

    A fresh directory gets the demo network's config, and its events spread over the `days`
    days (default DAYS) ending on `end` (default: today, UTC). `append=True` continues an
    existing log as a restarted receiver would: a new segment, seq carrying on, over the
    `days` days (default 1) after its last day. The same arguments and `end` give
    byte-identical files. `mix="earn"` writes only the earn app's traffic (an earn-heavy log,
    for the wallet credit job); `mix="clicks"` only recorded clicks, link and earn (for the
    receiver's start-up with millions of known clicks). `compress` (default) compresses each
    segment once written, as the receiver does once it is sealed.
    """
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}")
    if days is not None and days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if append and end is not None:
        raise ValueError("an appended part goes on after the log's last day: give days, not end")
    from clickledger.demo import write_demo_config, write_fx_rates

    started = time.perf_counter()
    out = Path(out)
    log_dir = DataDir(out).log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    # one writer per log, as for the receiver: nothing else appends or compresses meanwhile
    writer_lock = try_lock(log_dir / WRITER_LOCK_FILE)
    if writer_lock is None:
        raise LogLockedError(f"{log_dir} is being written by another clickledger process")
    with writer_lock, job_lock(log_dir), ThreadPoolExecutor(1, thread_name_prefix="compress") as pool:
        if not DataDir(out).config_path.exists():
            write_demo_config(out)
        number, last_seq, log_first_day, last_day = _existing(log_dir)
        if number and not append:
            raise FileExistsError(f"{log_dir} already holds segments (use append=True to continue it)")
        recover(log_dir)  # a crashed run's compression
        if last_day is not None:
            window = days or 1
            first_day = last_day + timedelta(days=1)
        else:
            window = days or DAYS
            first_day = (end or datetime.now(UTC).date()) - timedelta(days=window - 1)
        per_day = clicks_per_day or template_clicks(events)
        templates = [compile_template(capture_day(out, clicks=per_day, seed=seed * 1000 + t, day=TEMPLATE_DAY),
                                      seed=seed * 1000 + t, mix=mix,
                                      # an earn-heavy log is for crediting: no never-converting clicks
                                      click_share=CLICK_SHARE if mix == "all" else 0.0)
                     for t in range(TEMPLATES)]
        copies = _copies(templates, events)
        # seeded by what came before too, so an appended part never repeats the ids of the first
        rng = random.Random(f"{seed}:{last_seq}")
        summary = OfflineSummary(out, first_seq=last_seq + 1)
        compressing: list[Future[Path]] = []
        size = 0
        fd = None
        pieces: list[bytes] = []  # the segment being written, when it is compressed: never a plain file

        def write(heads: list[bytes], bodies: list[bytes]) -> None:
            if not compress:
                _write_lines(fd.fileno(), heads, bodies)  # type: ignore[union-attr]
                return
            batch = [_NEWLINE] * (3 * len(heads))
            batch[0::3], batch[1::3] = heads, bodies
            pieces.extend(batch)

        def seal() -> None:  # the segment written last is complete: compress it while the next is written
            nonlocal pieces
            if not summary.segments:
                return
            summary.plain_bytes += size
            if not compress:
                fd.close()  # type: ignore[union-attr]
                return
            while len(compressing) - sum(f.done() for f in compressing) >= 2:  # at most two segments in memory
                next(f for f in compressing if not f.done()).result()
            compressing.append(pool.submit(write_compressed_segment, summary.segments[-1], b"".join(pieces),
                                           durable=False))
            pieces = []

        def open_next() -> None:
            nonlocal fd, number, size
            seal()
            number += 1
            path = log_dir / segment_name(number)
            if not compress:  # unbuffered: _write_lines writes straight from the lines
                fd = path.open("xb", buffering=0)
            summary.segments.append(path)
            size = 0

        open_next()
        seq, left = last_seq + 1, events
        for copy in range(copies):
            template = templates[copy % len(templates)]
            day = first_day + timedelta(days=_day_of(copy, copies, window))
            count = min(left, len(template.lines))
            if count == len(template.lines):
                summary.by_kind.update(template.tags)
            else:
                summary.by_kind.update(line.tag for line in template.lines[:count])
            for heads, bodies in day_lines(template, day_values(template, rng, (day - TEMPLATE_DAY).days),
                                           seq, count):
                # rotate as the receiver does: before a write, once the segment is past the limit
                n = len(bodies)
                total = sum(map(len, bodies)) + (CRC_PREFIX_LEN + 1) * n
                if size + total - (CRC_PREFIX_LEN + len(bodies[-1]) + 1) < segment_bytes:
                    write(heads, bodies)  # the common case
                    size += total
                    continue
                ends = list(itertools.accumulate((CRC_PREFIX_LEN + len(body) + 1 for body in bodies),
                                                 initial=0))  # where each line of the batch starts, then the end
                i = 0
                while i < n:  # lines i.. go to this segment while its size before them is below the limit
                    cut = bisect.bisect_left(ends, segment_bytes - size + ends[i], lo=i, hi=n)
                    write(heads[i:cut], bodies[i:cut])
                    size += ends[cut] - ends[i]
                    if cut < n:
                        open_next()
                    i = cut
            seq += count
            left -= count
            summary.last_day = day
            if copy == 0:
                summary.first_day = day
        seal()
        waited = time.perf_counter()
        finals = [future.result() for future in compressing]
        summary.compress_wait_seconds = time.perf_counter() - waited
        if finals:
            summary.segments = finals
            summary.compressed_bytes = sum(path.stat().st_size for path in finals)
    summary.events = sum(summary.by_kind.values())
    summary.last_seq = last_seq + summary.events
    # rates for every day of the log, from a week before it (its first days may be a weekend,
    # which has no rate); the expiry days of the last clicks need none
    since = log_first_day or summary.first_day
    write_fx_rates(out, today=summary.last_day, days=(summary.last_day - since).days + 7)
    summary.seconds = time.perf_counter() - started
    return summary


__all__ = ["DAYS", "TEMPLATE_DAY", "OfflineSummary", "capture_day", "generate_log", "template_clicks"]
