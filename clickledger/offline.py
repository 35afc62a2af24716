"""`clickledger simulate --offline`: a large, valid event log written directly, without HTTP.

The records must be exactly what the receiver would have written, so they are not
invented here: a few days of planned traffic (clickledger.simulate's plan, every dialect,
refusal and follow-up it knows) are first sent through the real receiver in process,
with seeded click and event ids and a simulated clock. Those records are the
*templates*. Each template line is compiled once into a bytes format string whose
variable parts are slots: every UUID (click ids, event ids, and the ids derived from
them in redirect URLs, queries and bodies), every garbled click id derived from a
real one (so `nearest_click_id` still finds its click), the date of every timestamp,
and `seq`. A day of the generated log is one template with fresh ids and its dates
moved to that day; one `%` formatting and one `zlib.crc32` per line, both driven by
`map` so that no Python bytecode runs per line, and writev of the pieces make it fast.

Clicks that never convert are added as copies of the template's click records with
fresh ids, so clicks are ~57% of events, as in live traffic where most clicks never
convert. Same seed, same arguments: byte-identical files.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import random
import re
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from receiver.log import (
    DEFAULT_SEGMENT_BYTES,
    SEGMENT_RE,
    SegmentWriter,
    iter_segment,
    segment_paths,
)

FIRST_DAY = date(2024, 1, 1)  # day 0 of every generated log: output never depends on today
CLICK_SHARE = 0.57  # share of clicks among all events (live traffic: most clicks never convert)
TEMPLATES = 3  # distinct days of traffic; more gives more variety, costs ~1 s each to capture
_HEAD = b'{"v":1,"seq":'
_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_UUID_RE = re.compile(_UUID.decode())
_STAMP = rb'"(?P<day>\d{4}-\d{2}-\d{2})T\d{2}:\d{2}:\d{2}\.\d{6}Z"'
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
_ADDRS = ("203.0.113.7", "198.51.100.23", "192.0.2.44", "203.0.113.81", "198.51.100.9")


@dataclass
class OfflineSummary:
    """What `generate_log` wrote."""

    out: Path
    events: int = 0
    segments: list[Path] = field(default_factory=list)
    first_seq: int = 0
    last_seq: int = 0
    first_day: date = FIRST_DAY
    last_day: date = FIRST_DAY
    by_kind: Counter[str] = field(default_factory=Counter)  # "kind result", e.g. "postback recorded"
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        top = ", ".join(f"{k} {n:,}" for k, n in self.by_kind.most_common(8))
        return (f"clickledger simulate --offline: {self.events:,} events (seq {self.first_seq:,}.."
                f"{self.last_seq:,}) in {len(self.segments)} new segment(s) of {self.out / 'log'}, days "
                f"{self.first_day}..{self.last_day}, {self.seconds:.1f} s ({self.events_per_second:,.0f} "
                f"events/s)\n  {top}")


# ---------------------------------------------------------------- capturing templates


class _WsgiClient:
    """simulate's in-process client without falcon.testing's per-request WSGI validator,
    which took two thirds of each request's time; the app's code path is the same."""

    def __init__(self, app: Any):
        self._app = app
        self._turn = itertools.count()
        self.netloc = urlsplit(app.receiver.config.public_url).netloc.lower()

    def send(self, request: Any, timeout: float) -> tuple[int, str | None, bytes, bool]:
        from falcon.testing import create_environ

        path, _, query = request.target.partition("?")
        environ = create_environ(path, query_string=query, method=request.method, headers=request.headers,
                                 body=request.body or b"", remote_addr=_ADDRS[next(self._turn) % len(_ADDRS)])
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer["status"] = int(status.split()[0])
            answer["location"] = next((v for k, v in headers if k.lower() == "location"), None)

        body = b"".join(self._app(environ, start_response))
        return answer["status"], answer["location"], body, False

    def close(self) -> None:
        pass


def _seeded_ids(rng: random.Random) -> Callable[[], str]:
    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return new_id


def capture_day(config_dir: Path, *, clicks: int, seed: int, day: date) -> list[bytes]:
    """One day of planned traffic sent through the real receiver in process: its log lines.

    Sent one request at a time (the live simulator uses threads, whose interleaving is
    not reproducible) with seeded ids and a clock walking through `day`.
    """
    from clickledger.simulate import load, plan_traffic, resolve
    from receiver.app import create_app

    config, keys = load(config_dir)
    plan = plan_traffic(config, keys, clicks, seed)
    rng = random.Random(seed)
    opening = datetime(day.year, day.month, day.day, 2, tzinfo=UTC)
    spacing = timedelta(seconds=20 * 3600 / max(1, len(plan)))
    ticks = iter(range(10**12))
    with tempfile.TemporaryDirectory(prefix="clickledger-template-") as tmp:
        data = Path(tmp)
        (data / "config.toml").write_bytes((config_dir / "config.toml").read_bytes())
        # no fsync: these records are scratch, and a day costs thousands of appends
        writer = SegmentWriter(data / "log", fsync=lambda fd: None)
        app = create_app(data, clock=lambda: opening + spacing * next(ticks), writer=writer,
                         new_click_id=_seeded_ids(rng), new_event_id=_seeded_ids(rng))
        try:
            client = _WsgiClient(app)
            from clickledger.simulate import _Sender

            sender = _Sender(client, float("inf"))  # type: ignore[arg-type]
            clicked: dict[int, object] = {}
            sent: set[int] = set()
            for step in plan:
                if step.after is not None and step.after not in sent:
                    continue
                request = resolve(step, clicked)  # type: ignore[arg-type]
                if request is None:
                    continue
                outcome = sender.send(step, request)
                if outcome.status is not None:
                    sent.add(step.id)
                if outcome.click is not None:
                    clicked[step.id] = outcome.click
        finally:
            app.receiver.close()
        return [line for path in segment_paths(data / "log") for line in path.read_bytes().splitlines()]


# ---------------------------------------------------------------- compiling templates


@dataclass
class _Line:
    fmt: bytes  # the line after `"seq":`, with %s slots (and %% for a literal %)
    slots: tuple[int, ...]  # index in the day's values of each %s of fmt
    tag: str  # "kind result"


@dataclass
class _Template:
    """One captured day, compiled: lines, and how to make each slot's value for a new day.

    `fmts[i]` is line i without its crc32 member, from `"v":1,"seq":%d`, and `getters[i]`
    picks its `%` arguments from the day's values followed by the day's seqs.
    """

    lines: list[_Line]
    uuids: int  # slots 0..uuids-1 are fresh UUIDs
    derived: list[tuple[int, str, int, str]]  # (source uuid slot, "prefix"|"change", length|pos, char)
    dates: list[date]  # the template's dates; slot of dates[i] = uuids + len(derived) + i
    tags: Counter[str]
    fmts: list[bytes] = field(default_factory=list)
    getters: list[Callable[[list[Any]], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        values = self.uuids + len(self.derived) + len(self.dates)  # seq of line i is values + i
        self.fmts = [b'"v":1,"seq":%d' + line.fmt for line in self.lines]
        # a line without slots gets its seq alone, not in a tuple: `%` takes a lone value too
        self.getters = [operator.itemgetter(values + i, *line.slots) for i, line in enumerate(self.lines)]


def _garbles(records: list[dict], click_ids: set[str]) -> dict[str, tuple[str, str, int, str]]:
    """Click ids of postbacks that are typos of a real click id: garbled -> (source, how, n, char)."""
    out: dict[str, tuple[str, str, int, str]] = {}
    by_prefix = {c[:8]: c for c in click_ids}
    for record in records:
        fields = record.get("fields") or {}
        value = fields.get("click_id") if isinstance(fields, dict) else None
        if not isinstance(value, str) or value in click_ids or len(value) < 8:
            continue
        source = by_prefix.get(value[:8])
        if source is None:
            continue
        if source.startswith(value):
            out[value] = (source, "prefix", len(value), "")
        elif len(value) == len(source):
            diff = [i for i, (a, b) in enumerate(zip(value, source, strict=True)) if a != b]
            if len(diff) == 1:
                out[value] = (source, "change", diff[0], value[diff[0]])
    return out


MIXES = ("all", "earn", "clicks")


def _in_mix(record: dict, mix: str) -> bool:
    """Whether a record belongs to the traffic of `mix`: "earn" keeps the earn app's clicks,
    tracks and postbacks (and wrong-path postbacks meant for it) and drops every partner
    link's; the receiver answers each earn request the same without the others."""
    if mix == "all":
        return True
    if mix == "clicks":  # only recorded clicks: a log for the receiver's start-up bench
        return record.get("kind") == "click" and record.get("result") == "click"
    path, route = str(record.get("path") or ""), str(record.get("route") or "")
    return "earn" in route or (record.get("kind") in ("unrouted", "health") and "earn" in path) or (
        record.get("kind") == "health")


def compile_template(lines: list[bytes], *, click_share: float = CLICK_SHARE, seed: int = 1,
                     mix: str = "all") -> _Template:
    """Slots for every variable part of the captured lines, plus the copies of clicks."""
    records = [orjson.loads(line) for line in lines]
    kept = [(line, r) for line, r in zip(lines, records, strict=True) if _in_mix(r, mix)]
    lines, records = [line for line, _ in kept], [r for _, r in kept]
    click_ids = {r["fields"]["click_id"] for r in records
                 if r.get("kind") == "click" and r.get("result") == "click"}
    garbles = _garbles(records, click_ids)
    # a garbled id first, bounded so that a prefix never matches inside a longer id
    alternatives = [rb"(?<![0-9a-f-])(?P<garbled>" + b"|".join(
        re.escape(g.encode()) for g in sorted(garbles, key=len, reverse=True)) + rb")(?![0-9a-f-])"
        ] if garbles else []
    token = re.compile(b"|".join([*alternatives, rb"(?P<uuid>" + _UUID + rb")", _STAMP]))
    uuid_slot: dict[bytes, int] = {}
    derived_slot: dict[bytes, int] = {}
    derived: list[tuple[int, str, int, str]] = []
    dates: dict[bytes, int] = {}
    compiled: list[tuple[bytes, list[tuple[str, bytes]], str]] = []

    for line, record in zip(lines, records, strict=True):
        body = b"{" + line[20:]
        if not body.startswith(_HEAD):
            raise ValueError(f"unexpected template line {line[:60]!r}")
        rest = body[body.index(b",", len(_HEAD)):]  # from the comma after seq
        parts: list[bytes] = []
        slots: list[tuple[str, bytes]] = []
        pos = 0
        for m in token.finditer(rest):
            if m.lastgroup == "garbled" or m.lastgroup == "uuid":
                start, end, kind = m.start(), m.end(), m.lastgroup
            else:  # a timestamp: only its date is a slot
                start, end, kind = m.start("day"), m.end("day"), "date"
            parts.append(rest[pos:start].replace(b"%", b"%%"))
            parts.append(b"%s")
            slots.append((kind, rest[start:end]))
            pos = end
        parts.append(rest[pos:].replace(b"%", b"%%"))
        tag = f"{record.get('kind')} {record.get('result') or record.get('error')}"
        compiled.append((b"".join(parts), slots, tag))

    def slot_of(kind: str, value: bytes, fresh: dict[bytes, int] | None) -> int:
        if kind == "uuid":
            table = fresh if fresh is not None and value in fresh else uuid_slot
            return table.setdefault(value, len(uuid_slot)) if table is uuid_slot else table[value]
        if kind == "garbled":
            if value not in derived_slot:
                source, how, n, char = garbles[value.decode()]
                derived_slot[value] = len(derived)
                derived.append((slot_of("uuid", source.encode(), None), how, n, char))
            return derived_slot[value]
        return dates.setdefault(value, len(dates))

    rng = random.Random(seed)
    n_clicks = sum(1 for *_, tag in compiled if tag == "click click")
    # copies per click so that clicks make `click_share` of all events
    extra = max(0.0, (click_share * len(compiled) - n_clicks) / (1 - click_share)) / max(1, n_clicks)
    raw_lines: list[tuple[bytes, list[tuple[str, int]], str]] = []
    for fmt, slots, tag in compiled:
        copies = 1
        if tag == "click click":
            copies += int(extra) + (rng.random() < extra - int(extra))
        for copy in range(copies):
            # a copy gets fresh ids for all its UUIDs: a new click nobody posts back for
            fresh = None
            if copy:
                fresh = {}
                for kind, value in slots:
                    if kind == "uuid" and value not in fresh:
                        fresh[value] = len(uuid_slot) + len(fresh)
                for value in fresh:  # reserve them
                    uuid_slot[b"copy:%d" % fresh[value]] = fresh[value]
            raw_lines.append((fmt, [(kind, slot_of(kind, value, fresh)) for kind, value in slots], tag))
    n_uuid, n_derived = len(uuid_slot), len(derived)
    offset = {"uuid": 0, "garbled": n_uuid, "date": n_uuid + n_derived}
    out = [_Line(fmt, tuple(offset[kind] + i for kind, i in slots), tag) for fmt, slots, tag in raw_lines]
    ordered_dates = sorted(dates, key=dates.__getitem__)
    return _Template(out, n_uuid, derived, [date.fromisoformat(d.decode()) for d in ordered_dates],
                     Counter(line.tag for line in out))


# ---------------------------------------------------------------- writing days


def fresh_uuids(rng: random.Random, n: int) -> list[bytes]:
    """n random UUID v4 strings as bytes, from one draw of the seeded generator.

    Built column by column with extended slices (each a C-level copy over all n ids):
    formatting ids one at a time cost ~3 us each, half the generator's time. The ids are
    laid out space-separated so that one `split` cuts them, not a slice per id.
    """
    if n <= 0:
        return []
    hexed = rng.randbytes(16 * n).hex().encode()
    out = bytearray(b" " * (37 * n - 1))  # id i at 37*i, a space after each but the last
    src = 0
    for pos in range(36):
        if pos in (8, 13, 18, 23):
            out[pos::37] = b"-" * n
        elif pos == 14:
            out[pos::37] = b"4" * n
            src += 1
        elif pos == 19:
            out[pos::37] = hexed[src::32].translate(_VARIANT)
            src += 1
        else:
            out[pos::37] = hexed[src::32]
            src += 1
    return bytes(out).split(b" ")


def day_values(template: _Template, rng: random.Random, day_offset: int) -> list[bytes]:
    """Every slot value of one generated day: fresh ids, their derived typos, moved dates."""
    values = fresh_uuids(rng, template.uuids)
    for source, how, n, char in template.derived:
        text = values[source]
        if how == "prefix":
            values.append(text[:n])
        else:
            changed = bytearray(text)
            changed[n] = ord(char)
            values.append(bytes(changed))
    shift = timedelta(days=day_offset)
    values.extend((d + shift).isoformat().encode() for d in template.dates)
    return values


_CRC_OPEN = zlib.crc32(b"{")  # a line's CRC covers b"{" + the line after its crc32 member
_CRC_MEMBER = b'{"crc32":"%08x",'  # the start of a log line, before the record's own members
_PREFIX_LEN = len(_CRC_MEMBER % 0)
_NEWLINE = b"\n"
_BATCH = 128  # lines formatted and written at a time: ~150 KB, which stay in the CPU's L2 cache
# buffers per writev, a multiple of 3 (crc32 member, rest, newline of a line) within IOV_MAX
_IOV = min(1020, os.sysconf("SC_IOV_MAX") // 3 * 3)


def day_lines(template: _Template, values: list[bytes], first_seq: int,
              count: int) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """The first `count` lines of one generated day, seq numbered from `first_seq`, in batches
    of `_BATCH` lines: each line's crc32 member, and the rest of each line without its newline.

    Every per-line step is a C loop (map over `%` and crc32): no Python bytecode runs per
    line, and the lines are never joined: `_write_lines` hands the pieces to writev. A
    batch is formatted, checksummed and written while it is still in the CPU's cache.
    """
    args = [*values, *range(first_seq, first_seq + len(template.lines))]
    for start in range(0, count, _BATCH):
        end = min(count, start + _BATCH)
        bodies = list(map(operator.mod, template.fmts[start:end],
                          map(operator.call, template.getters[start:end], itertools.repeat(args))))
        yield list(map(_CRC_MEMBER.__mod__, map(zlib.crc32, bodies, itertools.repeat(_CRC_OPEN)))), bodies


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


def _existing(log_dir: Path) -> tuple[int, int, date | None]:
    """(last segment number, last seq, day of the last record) of an existing log."""
    paths = segment_paths(log_dir)
    if not paths:
        return 0, 0, None
    number = int(SEGMENT_RE.match(paths[-1].name).group(1))
    for path in reversed(paths):
        last = None
        for record in iter_segment(path):
            last = record
        if last is not None:
            return number, int(last["seq"]), date.fromisoformat(str(last["received_at"])[:10])
    return number, 0, None


def template_clicks(events: int) -> int:
    """Clicks per template day: more for a bigger log (10M events span ~5 years of days); capped
    because a template costs ~0.4 ms per request to capture."""
    return max(40, min(1500, events // 6000))


def generate_log(out: Path, events: int, seed: int = 1, *, append: bool = False,
                 clicks_per_day: int | None = None, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 mix: str = "all") -> OfflineSummary:
    """Write `events` records as log segments of `out`/log (plus config.toml and fx_rates.csv).

    A fresh directory gets the demo network's config. `append=True` continues an existing
    log as a restarted receiver would: a new segment, seq and days carrying on. The same
    arguments give byte-identical files. `mix="earn"` writes only the earn app's traffic
    (an earn-heavy log, for the wallet credit job); `mix="clicks"` only recorded clicks, link
    and earn (for the receiver's start-up with millions of known clicks).
    """
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}")
    from clickledger.demo import write_demo_config, write_fx_rates

    started = time.perf_counter()
    out = Path(out)
    log_dir = out / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    if not (out / "config.toml").exists():
        write_demo_config(out)
    number, last_seq, last_day = _existing(log_dir)
    if number and not append:
        raise FileExistsError(f"{log_dir} already holds segments (use append=True to continue it)")
    first_day = (last_day - FIRST_DAY).days + 1 if last_day is not None else 0
    per_day = clicks_per_day or template_clicks(events)
    templates = [compile_template(capture_day(out, clicks=per_day, seed=seed * 1000 + t, day=FIRST_DAY),
                                  seed=seed * 1000 + t, mix=mix,
                                  # an earn-heavy log is for crediting: no never-converting clicks
                                  click_share=CLICK_SHARE if mix == "all" else 0.0)
                 for t in range(TEMPLATES)]
    # seeded by what came before too, so an appended part never repeats the ids of the first
    rng = random.Random(f"{seed}:{last_seq}")
    summary = OfflineSummary(out, first_seq=last_seq + 1)
    size = 0
    fd = None

    def open_next() -> None:
        nonlocal fd, number, size
        if fd is not None:
            fd.close()
        number += 1
        path = log_dir / f"segment-{number:08d}.ndjson"
        fd = path.open("xb", buffering=0)  # unbuffered: _write_lines writes straight from the lines
        summary.segments.append(path)
        size = 0

    open_next()
    seq, day, left = last_seq + 1, first_day, events
    while left > 0:
        template = templates[day % len(templates)]
        count = min(left, len(template.lines))
        if count == len(template.lines):
            summary.by_kind.update(template.tags)
        else:
            summary.by_kind.update(line.tag for line in template.lines[:count])
        for heads, bodies in day_lines(template, day_values(template, rng, day), seq, count):
            # rotate as the receiver does: before a write, once the segment is past the limit
            n = len(bodies)
            total = sum(map(len, bodies)) + (_PREFIX_LEN + 1) * n
            if size + total - (_PREFIX_LEN + len(bodies[-1]) + 1) < segment_bytes:
                _write_lines(fd.fileno(), heads, bodies)  # type: ignore[union-attr]  # the common case
                size += total
                continue
            ends = list(itertools.accumulate((_PREFIX_LEN + len(body) + 1 for body in bodies),
                                             initial=0))  # where each line of the batch starts, then the end
            i = 0
            while i < n:  # lines i.. go to this segment while its size before them is below the limit
                cut = bisect.bisect_left(ends, segment_bytes - size + ends[i], lo=i, hi=n)
                _write_lines(fd.fileno(), heads[i:cut], bodies[i:cut])  # type: ignore[union-attr]
                size += ends[cut] - ends[i]
                if cut < n:
                    open_next()
                i = cut
        seq += count
        left -= count
        day += 1
    fd.close()  # type: ignore[union-attr]
    summary.last_day = FIRST_DAY + timedelta(days=day - 1)
    summary.events = sum(summary.by_kind.values())
    summary.last_seq = last_seq + summary.events
    summary.first_day = FIRST_DAY + timedelta(days=first_day)
    # rates for every day of the log; the expiry days of the last clicks need none
    write_fx_rates(out, today=summary.last_day, days=(summary.last_day - FIRST_DAY).days + 1)
    summary.seconds = time.perf_counter() - started
    return summary


__all__ = ["OfflineSummary", "capture_day", "compile_template", "generate_log"]
