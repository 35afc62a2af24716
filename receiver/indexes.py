"""What the receiver must remember to answer a postback: known clicks and recorded conversions.

Both are derived from the log alone, so the log stays the only source of truth: at start
`receiver.snapshot.load_indexes` builds them from per-segment sidecars (derived caches,
rebuilt from the segment whenever they do not match it), and `rebuild_indexes` builds
them straight from log records.

The click index must hold tens of millions of clicks in little memory, so clicks loaded
from the log live in `CompactClicks`: click ids that are canonical UUID strings become
16 raw bytes in one sorted `bytes` array, and each click's attributes one fixed 16-byte
row of small integers into interned tables. Clicks with any other id, and every click
added by the running process, live in an ordinary dict consulted first.
"""

from __future__ import annotations

import re
import struct
import threading
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.contract.params import normalise_click_id, pair_key
from receiver.contract.timeutil import parse_utc


@dataclass(frozen=True, slots=True)
class Click:
    click_id: str
    source: str  # "link" | "earn"
    offer_id: str
    partner_id: str
    affiliate_id: str | None
    user_id: str | None
    product_id: str | None
    expires_at: datetime | None  # UTC; None = never expires

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Click:
        expires = fields.get("expires_at")
        return cls(
            fields["click_id"], fields.get("source", "link"), fields["offer_id"], fields["partner_id"],
            fields.get("affiliate_id"), fields.get("user_id"), fields.get("product_id"),
            parse_utc(expires) if expires else None,
        )


# ---------------------------------------------------------------- compact storage

# Only the canonical lower-case form: its 16 bytes turn back into exactly the same string,
# so an upper-case or braced id (a different string, unknown to a dict) stays unknown here too.
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KEY_BYTES = 16
# One row per click: combo index, user index, expires_at in microseconds since the epoch.
ROW = struct.Struct("<IIq")
ROW_BYTES = ROW.size
NEVER = -(2**63)  # expires_at None
BUCKET_BITS = 16  # the first two key bytes pick a bucket: ~150 keys each at 10M clicks
BUCKETS = 1 << BUCKET_BITS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

assert ROW_BYTES == 16


def uuid_key(click_id: str) -> bytes | None:
    """The 16 bytes of a canonical UUID string, or None for any other id."""
    if len(click_id) == 36 and _UUID_RE.fullmatch(click_id):
        return bytes.fromhex(click_id.replace("-", ""))
    return None


def key_to_id(key: bytes) -> str:
    h = key.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def to_micros(moment: datetime) -> int:
    """Exact: integer microseconds, so a restored expires_at equals the one parsed from the log."""
    return (moment - EPOCH) // _MICRO


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


# (source, offer_id, partner_id, affiliate_id, product_id): few distinct values per network
Combo = tuple[str, str, str, str | None, str | None]


def lower_bound(keys: bytes, key: bytes, lo: int, hi: int) -> int:
    """First index in [lo, hi) whose 16-byte key is >= key (keys sorted)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        start = mid * KEY_BYTES
        if keys[start:start + KEY_BYTES] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def bucket_offsets(keys: bytes) -> array:
    """offsets[b] = index of the first key whose first two bytes are >= b (BUCKETS + 1 entries)."""
    n = len(keys) // KEY_BYTES
    offsets = array("I", bytes(4 * (BUCKETS + 1)))
    if n == 0:  # every offset is 0: the loop below costs ~90 ms, paid by every empty start
        return offsets
    lo = 0
    pad = bytes(KEY_BYTES - 2)
    for bucket in range(BUCKETS):
        lo = lower_bound(keys, bucket.to_bytes(2, "big") + pad, lo, n)
        offsets[bucket] = lo
    offsets[BUCKETS] = n
    return offsets


class CompactClicks:
    """An immutable set of clicks with UUID ids: sorted keys, parallel rows, interned tables.

    32 bytes per click (16 key + 16 row) plus the tables. A lookup is a bucket jump and
    a binary search of ~8 steps, then one Click built from the row.
    """

    __slots__ = ("keys", "rows", "offsets", "combos", "users", "n")

    def __init__(self, keys: bytes, rows: bytes, combos: list[Combo], users: list[str | None],
                 offsets: array | None = None):
        if len(keys) % KEY_BYTES or len(rows) != len(keys):
            raise ValueError("keys and rows must be 16 bytes per click, as many of each")
        self.keys, self.rows, self.combos, self.users = keys, rows, combos, users
        self.n = len(keys) // KEY_BYTES
        self.offsets = offsets if offsets is not None else bucket_offsets(keys)
        if len(self.offsets) != BUCKETS + 1 or self.offsets[BUCKETS] != self.n:
            raise ValueError("bucket offsets do not match the keys")

    @classmethod
    def empty(cls) -> CompactClicks:
        return cls(b"", b"", [], [None])

    def position(self, key: bytes) -> int | None:
        bucket = (key[0] << 8) | key[1]
        end = self.offsets[bucket + 1]
        i = lower_bound(self.keys, key, self.offsets[bucket], end)
        if i < end and self.keys[i * KEY_BYTES:(i + 1) * KEY_BYTES] == key:
            return i
        return None

    def click_at(self, i: int, click_id: str) -> Click:
        combo, user, expires = ROW.unpack_from(self.rows, i * ROW_BYTES)
        source, offer, partner, affiliate, product = self.combos[combo]
        return Click(click_id, source, offer, partner, affiliate, self.users[user], product,
                     None if expires == NEVER else from_micros(expires))

    def get(self, click_id: str) -> Click | None:
        key = uuid_key(click_id)
        if key is None:
            return None
        i = self.position(key)
        return None if i is None else self.click_at(i, click_id)

    def __contains__(self, click_id: object) -> bool:
        key = uuid_key(click_id) if isinstance(click_id, str) else None
        return key is not None and self.position(key) is not None

    def ids(self) -> Iterator[str]:
        keys = self.keys
        for i in range(self.n):
            yield key_to_id(keys[i * KEY_BYTES:(i + 1) * KEY_BYTES])

    def nbytes(self) -> int:
        """Bytes of the arrays (the tables are small and shared)."""
        return len(self.keys) + len(self.rows) + self.offsets.itemsize * len(self.offsets)


class ClickIndex:
    """click_id -> Click.

    Clicks loaded from the log are in `compact` (immutable); clicks with non-UUID ids from
    the log, and every click added since start, are in a dict that wins over `compact`
    (a later click with the same id replaces the earlier, as it did when everything was a
    dict). Dict assignment is atomic under the GIL, so reads take no lock.
    """

    def __init__(self, compact: CompactClicks | None = None, others: dict[str, Click] | None = None):
        self._compact = compact if compact is not None else CompactClicks.empty()
        self._clicks: dict[str, Click] = dict(others or {})
        if any(click_id in self._compact for click_id in self._clicks):
            raise ValueError("a click id is both in the compact part and in the dict")
        self._len = self._compact.n + len(self._clicks)
        self._add_lock = threading.Lock()  # only keeps the count right under concurrent adds

    @property
    def compact(self) -> CompactClicks:
        return self._compact

    def add(self, click: Click) -> None:
        with self._add_lock:
            if click.click_id not in self._clicks and click.click_id not in self._compact:
                self._len += 1
            self._clicks[click.click_id] = click

    def get(self, click_id: str) -> Click | None:
        """The click of this id; a UUID is found in any case (trackers upper-case some)."""
        click = self._clicks.get(click_id)
        if click is not None:
            return click
        click = self._compact.get(click_id)
        if click is None and (canonical := normalise_click_id(click_id)) != click_id:
            return self.get(canonical)
        return click

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        clicks = dict(self._clicks)
        yield from clicks
        for click_id in self._compact.ids():
            if click_id not in clicks:
                yield click_id


class ConversionIndex:
    """Recorded (click_id, transaction_id) pairs, with per-key locks for the check-then-record step.

    A postback holds its key's lock from the duplicate check until its record is
    durable, so 50 identical postbacks at once give one `recorded`; the locks are
    striped, so different keys rarely wait on each other. Keys are taken as
    receiver.contract.params.pair_key gives them: a UUID click id in another case is the
    same conversion (the log keeps the id as sent).
    """

    STRIPES = 1024

    def __init__(self, recorded: dict[tuple[str, str], str] | None = None) -> None:
        self._recorded: dict[tuple[str, str], str] = recorded if recorded is not None else {}
        self._locks = [threading.Lock() for _ in range(self.STRIPES)]

    # Each method takes the key as sent and normalises it (pair_key) only when its click id is
    # not already lower case: the ids we issue always are, so the usual postback pays one
    # islower() per call rather than a function call.

    def claim(self, key: tuple[str, str]) -> threading.Lock:
        """The lock to hold (`with index.claim(key):`) from the duplicate check until the record is durable."""
        if not key[0].islower():
            key = pair_key(*key)
        return self._locks[hash(key) % self.STRIPES]

    def is_recorded(self, key: tuple[str, str]) -> bool:
        if not key[0].islower():
            key = pair_key(*key)
        return key in self._recorded

    def status(self, key: tuple[str, str]) -> str | None:
        """The status of the key's first recorded postback, None when it has none."""
        if not key[0].islower():
            key = pair_key(*key)
        return self._recorded.get(key)

    def add(self, key: tuple[str, str], status: str) -> None:
        if not key[0].islower():
            key = pair_key(*key)
        self._recorded.setdefault(key, status)

    def __len__(self) -> int:
        return len(self._recorded)


def rebuild_indexes(records: Iterable[dict[str, Any]]) -> tuple[ClickIndex, ConversionIndex, int]:
    """Indexes from log records, all held in dicts; returns them and the highest seq seen.

    The reference semantics: `receiver.snapshot` must answer exactly like this.
    """
    clicks, conversions = ClickIndex(), ConversionIndex()
    top = 0
    for record in records:
        top = max(top, record.get("seq", 0))
        kind = record.get("kind")
        fields = record.get("fields") or {}
        if kind == "click" and record.get("result") == "click" and fields.get("click_id"):
            clicks.add(Click.from_fields(fields))
        elif kind == "postback" and record.get("result") == "recorded":
            conversions.add((fields["click_id"], fields["transaction_id"]), fields.get("status", ""))
    return clicks, conversions, top
