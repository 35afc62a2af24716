"""Progress of long commands (`run`, `credit`, `simulate --offline`, the bench): rate and ETA.

On a terminal, a rich progress bar (done/total, rate, elapsed, ETA) redrawn in place; in a
log (stderr not a terminal) one plain line every `every` seconds and one at the end of a
phase, so a nightly job's log shows that it moves and when it will end without a line per
item. A command announces phases ("staging", "deriving") with `update(done, total, phase)`:
a new phase ends the previous one's bar.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

LOG_EVERY_SECONDS = 5.0


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """`update(done, total, phase, unit)` from the work's loop; use as a context manager."""

    def __init__(self, *, stream: IO[str] | None = None, every: float = LOG_EVERY_SECONDS,
                 terminal: bool | None = None, clock: Any = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.clock = clock
        self.phase: str | None = None
        self._bar: Any = None
        self._task: Any = None
        self._started = 0.0
        self._last_line = 0.0
        self._done = 0
        self._first = 0
        self._written = -1  # the `done` of the last line written
        self._total = 0
        self._unit = ""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, done: int, total: int, item: object = None) -> None:
        """The pipeline's callback form (index, total, segment path or partition name)."""
        phase = "deriving" if isinstance(item, str) else "staging"
        self.update(done, total, phase, "partitions" if phase == "deriving" else "segments")

    def update(self, done: int, total: int, phase: str = "working", unit: str = "items") -> None:
        now = self.clock()
        if phase != self.phase:
            self._end_phase()
            self.phase, self._started, self._last_line, self._unit = phase, now, now, unit
            self._first = done  # the rate counts from the phase's first report
            if self.terminal:
                self._open_bar(total)
        self._done, self._total = done, total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        if (done >= total and self._written != done) or now - self._last_line >= self.every:
            self._last_line = now
            self._write_line(now)

    def rate(self, now: float | None = None) -> float:
        elapsed = (self.clock() if now is None else now) - self._started
        return (self._done - self._first) / elapsed if elapsed > 0 else 0.0

    def _write_line(self, now: float) -> None:
        self._written = self._done
        rate = self.rate(now)
        left = (self._total - self._done) / rate if rate > 0 else None
        percent = 100 * self._done / self._total if self._total else 100.0
        print(f"  {self.phase} {self._done:,}/{self._total:,} {self._unit} ({percent:.0f}%), "
              f"{rate:,.1f} {self._unit}/s, elapsed {_eta_text(now - self._started)}, ETA {_eta_text(left)}",
              file=self.stream, flush=True)

    def _open_bar(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar
        from rich.text import Text

        unit = self._unit

        class RateColumn(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text("?" if speed is None else f"{speed:,.1f} {unit}/s")

        self._bar = Bar(TextColumn(f"  {self.phase}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                        TaskProgressColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), console=Console(file=self.stream, force_terminal=True), transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.phase or "", total=total)

    def _end_phase(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None
        elif self.phase is not None and self._done < self._total and self._written != self._done:
            self._write_line(self.clock())  # the log's last word on a phase that ended early

    def close(self) -> None:
        self._end_phase()
        self.phase = None
