"""What the receiver must remember to answer a postback: known clicks and recorded conversions.

Both are derived from the log alone (rebuilt at start by `rebuild_indexes`), so the
log stays the only source of truth.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.timeutil import parse_utc


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


class ClickIndex:
    """click_id -> Click. Dict assignment is atomic under the GIL, so reads take no lock."""

    def __init__(self) -> None:
        self._clicks: dict[str, Click] = {}

    def add(self, click: Click) -> None:
        self._clicks[click.click_id] = click

    def get(self, click_id: str) -> Click | None:
        return self._clicks.get(click_id)

    def __len__(self) -> int:
        return len(self._clicks)

    def __iter__(self) -> Iterator[str]:
        return iter(self._clicks)


class ConversionIndex:
    """Recorded (click_id, transaction_id) pairs, with per-key locks for the check-then-record step.

    A postback holds its key's lock from the duplicate check until its record is
    durable, so 50 identical postbacks at once give one `recorded`; the locks are
    striped, so different keys rarely wait on each other.
    """

    STRIPES = 1024

    def __init__(self) -> None:
        self._recorded: dict[tuple[str, str], str] = {}  # key -> status at first insert
        self._locks = [threading.Lock() for _ in range(self.STRIPES)]

    def claim(self, key: tuple[str, str]) -> threading.Lock:
        """The lock to hold (`with index.claim(key):`) from the duplicate check until the record is durable."""
        return self._locks[hash(key) % self.STRIPES]

    def is_recorded(self, key: tuple[str, str]) -> bool:
        return key in self._recorded

    def add(self, key: tuple[str, str], status: str) -> None:
        self._recorded.setdefault(key, status)

    def __len__(self) -> int:
        return len(self._recorded)


def rebuild_indexes(records: Iterable[dict[str, Any]]) -> tuple[ClickIndex, ConversionIndex, int]:
    """Indexes from log records; returns them and the highest seq seen."""
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
