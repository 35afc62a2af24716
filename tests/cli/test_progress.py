"""Long commands show progress with rate and ETA: a bar on a terminal, a line every few seconds in a log."""

from __future__ import annotations

import io
from pathlib import Path

from clickledger.progress import Progress
from clickledger.simulator.offline import generate_log


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_every_few_seconds_with_rate_and_eta():
    out, clock = io.StringIO(), FakeClock()
    with Progress(stream=out, terminal=False, every=5.0, clock=clock) as shown:
        shown.update(0, 100, "staging", "segments")
        for done in range(1, 101):
            clock.now += 0.5  # 2 segments a second: 50 s in all
            shown.update(done, 100, "staging", "segments")
    lines = out.getvalue().splitlines()
    assert 9 <= len(lines) <= 11  # one per 5 s of 50 s, and the last: never a line per segment
    assert lines[0] == "  staging 10/100 segments (10%), 2.0 segments/s, elapsed 0:05, ETA 0:45"
    assert lines[-1] == "  staging 100/100 segments (100%), 2.0 segments/s, elapsed 0:50, ETA 0:00"


def test_a_new_phase_ends_the_last_and_starts_its_own_rate():
    out, clock = io.StringIO(), FakeClock()
    with Progress(stream=out, terminal=False, every=5.0, clock=clock) as shown:
        clock.now += 1
        shown(3, 10, Path("segment-00000003.ndjson"))  # the pipeline's callback: a segment path
        clock.now += 1
        shown(1, 4, "click_day=2026-11-30")  # then partitions by name
        clock.now += 1
        shown(4, 4, "click_day=2026-12-01")
    text = out.getvalue()
    assert "  staging 3/10 segments (30%)" in text  # the unfinished phase says where it stopped
    assert "  deriving 4/4 partitions (100%), 3.0 partitions/s, elapsed 0:01, ETA 0:00" in text


def test_a_terminal_gets_a_bar_with_rate_and_eta():
    out = io.StringIO()
    with Progress(stream=out, terminal=True) as shown:
        for done in range(1, 6):
            shown.update(done, 5, "writing", "events")
    text = out.getvalue()
    assert "writing" in text and "5/5" in text and "events/s" in text and "ETA" in text


def test_the_generator_reports_its_progress(tmp_path):
    calls: list[tuple[int, int]] = []
    generate_log(tmp_path / "data", 3000, seed=3, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (3000, 3000)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
