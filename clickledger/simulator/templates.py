"""Templates of the offline generator: captured log lines compiled into format strings whose
variable parts are slots, and a generated day's lines made from them.

Each template line is compiled once into a bytes format string whose variable parts are
slots: every UUID (click ids, event ids, and the ids derived from them in redirect URLs,
queries and bodies), every garbled click id derived from a real one (so
`nearest_click_id` still finds its click), the date of every timestamp, and `seq`. A day
of the generated log is one template with fresh ids and its dates moved to that day; one
`%` formatting and one `zlib.crc32` per line, both driven by `map` so that no Python
bytecode runs per line.

Clicks that never convert are added as copies of the template's click records with
fresh ids, so clicks are ~57% of events, as in live traffic where most clicks never
convert.
"""

from __future__ import annotations

import itertools
import operator
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from receiver.contract.framing import line_heads, unframe

CLICK_SHARE = 0.57  # share of clicks among all events (live traffic: most clicks never convert)
_HEAD = b'{"v":1,"seq":'
_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_STAMP = rb'"(?P<day>\d{4}-\d{2}-\d{2})T\d{2}:\d{2}:\d{2}\.\d{6}Z"'
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
_BATCH = 128  # lines formatted and written at a time: ~150 KB, which stay in the CPU's L2 cache


# ---------------------------------------------------------------- compiling templates


@dataclass
class Line:
    fmt: bytes  # the line after `"seq":`, with %s slots (and %% for a literal %)
    slots: tuple[int, ...]  # index in the day's values of each %s of fmt
    tag: str  # "kind result"


@dataclass
class Template:
    """One captured day, compiled: lines, and how to make each slot's value for a new day.

    `fmts[i]` is line i without its crc32 member, from `"v":1,"seq":%d`, and `getters[i]`
    picks its `%` arguments from the day's values followed by the day's seqs.
    """

    lines: list[Line]
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
                     mix: str = "all") -> Template:
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
        body = unframe(line)
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
    out = [Line(fmt, tuple(offset[kind] + i for kind, i in slots), tag) for fmt, slots, tag in raw_lines]
    ordered_dates = sorted(dates, key=dates.__getitem__)
    return Template(out, n_uuid, derived, [date.fromisoformat(d.decode()) for d in ordered_dates],
                     Counter(line.tag for line in out))


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


def day_values(template: Template, rng: random.Random, day_offset: int) -> list[bytes]:
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


def day_lines(template: Template, values: list[bytes], first_seq: int,
              count: int) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """The first `count` lines of one generated day, seq numbered from `first_seq`, in batches
    of `_BATCH` lines: each line's crc32 member, and the rest of each line without its newline.

    Every per-line step is a C loop (map over `%` and crc32): no Python bytecode runs per
    line, and the lines are never joined: the offline writer hands the pieces to writev. A
    batch is formatted, checksummed and written while it is still in the CPU's cache.
    """
    args = [*values, *range(first_seq, first_seq + len(template.lines))]
    for start in range(0, count, _BATCH):
        end = min(count, start + _BATCH)
        bodies = list(map(operator.mod, template.fmts[start:end],
                          map(operator.call, template.getters[start:end], itertools.repeat(args))))
        yield line_heads(bodies), bodies


__all__ = ["CLICK_SHARE", "MIXES", "Template", "compile_template", "day_lines", "day_values", "fresh_uuids"]
