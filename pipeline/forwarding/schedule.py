"""The retry schedule: about three days, persisted in the delivery log (each outcome names the
next attempt), with jitter, on an injected clock.

Attempt 1 is sent at once; after a failed attempt N the next waits RETRY_DELAYS[N] (x 0.9 to 1.1),
so ten attempts span 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h. A 429 or 503 with
Retry-After waits what it asks instead (at most a day). After the tenth the delivery is
`exhausted` (replayable with `forward --resend` or `--replay`).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

RETRY_DELAYS = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600)
JITTER = 0.10
MAX_RETRY_AFTER = 24 * 3600  # a Retry-After longer than this is capped


def next_attempt_at(attempts: int, finished: datetime, rng: random.Random,
                    retry_after: float | None = None) -> datetime | None:
    """When to try again after `attempts` failed attempts of the current schedule (None: exhausted)."""
    if attempts >= len(RETRY_DELAYS):
        return None
    if retry_after is not None:
        return finished + timedelta(seconds=min(max(retry_after, 0.0), MAX_RETRY_AFTER))
    delay = RETRY_DELAYS[attempts] * (1 + rng.uniform(-JITTER, JITTER))
    return finished + timedelta(seconds=delay)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks for: delay-seconds or an HTTP-date (None when absent or bad)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)
