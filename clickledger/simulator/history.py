"""Traffic of past days: a day's plan sent through the real receiver in process, its clock
walking through that day, so the log holds a realistic history (demos, notebooks) and the
offline generator gets its templates from the same code path."""

from __future__ import annotations

import itertools
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clickledger.simulator.clients import InProcessClient
from clickledger.simulator.plan import load, plan_traffic
from clickledger.simulator.run import THREADS, run_plan
from clickledger.simulator.sending import TIME_LIMIT, Sender
from clickledger.simulator.steps import Step
from clickledger.simulator.summary import SimulationSummary

OPENING = timedelta(hours=2)  # the day's first request, after midnight UTC
DAY_SECONDS = 20 * 3600  # the day's requests are spread evenly over this many seconds


def send_day(data_dir: Path, plan: list[Step], day_start: datetime, summary: SimulationSummary, *,
             threads: int = THREADS, deadline: float | None = None, **app_options: Any) -> None:
    """Send `plan` through a receiver app over `data_dir`, created for it and closed after,
    whose clock reads `day_start` + 02:00 at the first request and moves on evenly by
    request. `app_options` go to `receiver.app.create_app` (writer, id generators).
    Must not run while another receiver serves `data_dir` (one writer per log)."""
    from receiver.app import create_app

    opening = day_start + OPENING
    spacing = timedelta(seconds=DAY_SECONDS / max(1, len(plan)))
    ticks = itertools.count()
    app = create_app(Path(data_dir), clock=lambda: opening + spacing * next(ticks), **app_options)
    try:
        sender = Sender(InProcessClient(app), time.monotonic() + TIME_LIMIT if deadline is None else deadline)
        run_plan(plan, sender, summary, threads=threads)
    finally:
        app.receiver.close()


def simulate_history(data_dir: Path, *, days: int, clicks_per_day: int = 200, seed: int = 1,
                     end: datetime | None = None) -> list[SimulationSummary]:
    """Past days of traffic, each day's plan sent through an in-process receiver whose clock
    walks through that day, so the log holds a realistic history (for demos and notebooks).

    Days are the `days` UTC days before `end`'s day (default: today), oldest first; volume
    varies by weekday. Must run before any receiver serves `data_dir` (one writer per log).
    """
    config, keys = load(data_dir)
    today = (end or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(seed)
    summaries = []
    for back in range(days, 0, -1):
        day_start = today - timedelta(days=back)
        volume = max(10, int(clicks_per_day * (0.75 if day_start.weekday() >= 5 else 1.0)
                             * rng.uniform(0.8, 1.2)))
        plan = plan_traffic(config, keys, volume, seed * 1000 + back)
        summary = SimulationSummary(f"history {day_start.date().isoformat()}", seed, volume,
                                    planned=len(plan))
        started = time.monotonic()
        send_day(data_dir, plan, day_start, summary)
        summary.elapsed = time.monotonic() - started
        summaries.append(summary)
    return summaries


__all__ = ["send_day", "simulate_history"]
