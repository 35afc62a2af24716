"""Predictable click and event ids for the receiver app (`create_app(new_click_id=...)`)."""

from __future__ import annotations

import itertools
import threading


def uuid_like(n: int, prefix: str = "00000000") -> str:
    """A valid UUID v4 string (version 4, RFC 4122 variant) with a readable counter."""
    return f"{prefix}-0000-4000-8000-{n:012d}"


class IdSequence:
    """Predictable ids: uuid_like(1), uuid_like(2), ...; safe to call from many threads."""

    def __init__(self, prefix: str = "00000000"):
        self.prefix = prefix
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.issued: list[str] = []

    def __call__(self) -> str:
        with self._lock:
            value = uuid_like(next(self._counter), self.prefix)
            self.issued.append(value)
            return value

    def peek(self) -> str:
        """The id the next call will return."""
        with self._lock:
            return uuid_like(len(self.issued) + 1, self.prefix)
