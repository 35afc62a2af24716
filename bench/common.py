"""What every benchmark part returns, and the one table `make bench` prints.

Each part (receiver_bench, startup_bench, pipeline_bench) exposes
`run(work: Path, ...) -> list[Figure]` and can also run alone as a script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured figure. `value` and `reference` are numbers in `unit`; `ratio` is
    value/reference when the target is relative (e.g. 0.82 of the ceiling), else None."""

    part: str  # "1 receiver postbacks", "4 pipeline full", ...
    name: str  # what was measured, e.g. "durable postbacks/s, 16 conns"
    value: float
    unit: str  # "req/s", "s", "MiB", "B/click", "ms"
    target: str  # as the issue states it: ">= 0.8 x ceiling", "<= 10 s"
    met: bool | None  # None: informational, no target
    reference: float | None = None  # the ceiling / floor measured in the same run
    ratio: float | None = None
    detail: str = ""  # how it was measured, checks that passed


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def print_table(figures: list[Figure], out=sys.stdout) -> None:
    """One markdown table (it pastes into docs/benchmarks.md as it is)."""
    print("| part | figure | value | unit | reference | ratio | target | met | detail |", file=out)
    print("|---|---|---|---|---|---|---|---|---|", file=out)
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "**NO**")
        print(f"| {f.part} | {f.name} | {_fmt(f.value)} | {f.unit} | {_fmt(f.reference)} | "
              f"{_fmt(f.ratio)} | {f.target} | {met} | {f.detail} |", file=out)


@dataclass(frozen=True)
class Timed:
    seconds: float
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str


def run_timed(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 900) -> Timed:
    """Run a command in a child process: wall seconds and that child's own peak RSS.

    os.wait4 gives the rusage of exactly this child (and the children it waited for), so
    figures of earlier commands never leak into this one.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=err)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Timed(seconds, usage.ru_maxrss / 1024, proc.returncode, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"))
