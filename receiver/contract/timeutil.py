"""UTC timestamps as the log writes them (a record's `received_at`, a click's `expires_at`): ISO 8601 with microseconds and a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_utc(moment: datetime, *, micros: bool = True) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` (or without the fraction); isoformat is C and exact for it."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds" if micros else "seconds")[:-6] + "Z"  # drop +00:00


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
