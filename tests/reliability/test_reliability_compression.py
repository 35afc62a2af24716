"""Compressing a sealed segment loses nothing, wherever it is killed (issue 13, target 6).

The compression job (`python -m receiver.compression LOG_DIR`, what the receiver runs in a
child) is paused at each of its steps and killed there with SIGKILL. At that point every
reader (the framing, the receiver's index rebuild, the pipeline's staging and its cache,
the support story) must read every record once, seq continuous; then the next job (or a
receiver start) finishes or undoes the interrupted one, and the readers read the same.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.staging import stage_log
from pipeline.story import log_requests
from receiver.app import Settings
from receiver.compression import STEPS, compress_sealed, temp_path
from receiver.contract import framing
from receiver.snapshot import load_indexes
from tests.support.log_builder import cid, traffic_log
from tests.support.paths import REPO

CLICKS = 90
SEGMENTS = 3
# which forms of the first segment exist once the job is killed after each step
FORMS = {"temp-written": {"plain", "temp"}, "temp-synced": {"plain", "temp"}, "verified": {"plain", "temp"},
         "renamed": {"plain", "compressed"}, "published": {"plain", "compressed"},
         "plain-removed": {"compressed"}, "done": {"compressed"}}


def _forms(log_dir: Path, number: int) -> set[str]:
    plain = log_dir / framing.segment_name(number)
    found = {"plain": plain, "compressed": framing.compressed_path(plain), "temp": temp_path(plain)}
    return {form for form, path in found.items() if path.exists()}


def _kill_at(log_dir: Path, step: str) -> None:
    """Run a compression job over `log_dir`, and SIGKILL it once it pauses at `step`."""
    proc = subprocess.Popen([sys.executable, "-m", "receiver.compression", str(log_dir)], cwd=REPO,
                            env={**os.environ, "CLICKLEDGER_COMPRESS_PAUSE_AT": step},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        said = b""
        while b"paused at" not in said:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, f"the job never paused at {step}: {said!r}"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                said += os.read(proc.stdout.fileno(), 4096)  # type: ignore[union-attr]
        assert said.strip() == f"paused at {step}".encode()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


class Baseline:
    """What every reader gives over the log before any compression."""

    def __init__(self, data: Path):
        self.data = data
        self.log_dir, self.cache = data / "log", data / "staging-cache"
        self.records = list(framing.iter_log(self.log_dir))
        assert [r["seq"] for r in self.records] == list(range(1, len(self.records) + 1))
        self.index = self._index()
        staged = stage_log(self.log_dir, cache_dir=self.cache)
        assert staged.cached == 0
        self.events = staged.events
        self.story = {n: log_requests(data, click_id=cid(n)) for n in (1, CLICKS)}

    def _index(self) -> tuple[Any, ...]:
        loaded = load_indexes(self.log_dir)
        data = loaded.data
        return data.keys, data.rows, data.conversions, data.bad_lines, loaded.top_seq, len(loaded.clicks)

    def check_readers(self) -> None:
        bad: list[framing.BadLine] = []
        assert list(framing.iter_log(self.log_dir, on_bad=bad.append)) == self.records and bad == []
        assert framing.last_seq(self.log_dir) == len(self.records)
        assert self._index() == self.index
        assert self.index[-1] == CLICKS
        staged = stage_log(self.log_dir, cache_dir=self.cache)
        assert staged.cached == SEGMENTS  # a segment is not staged again for being compressed
        assert staged.events.equals(self.events)
        for n, story in self.story.items():
            assert log_requests(self.data, click_id=cid(n)).equals(story)


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_of_a_compression_loses_nothing(tmp_path: Path, step: str) -> None:
    data = tmp_path / "data"
    traffic_log(data, clicks=CLICKS, segments=SEGMENTS)
    baseline = Baseline(data)
    log_dir = baseline.log_dir
    _kill_at(log_dir, step)
    assert _forms(log_dir, 1) == FORMS[step]
    assert all(_forms(log_dir, n) == {"plain"} for n in range(2, SEGMENTS + 1))
    baseline.check_readers()

    job = compress_sealed(log_dir)  # the next job (a receiver start runs one) finishes or undoes it
    assert bool(job.recovered) == (FORMS[step] != {"compressed"})  # a temporary file, or both forms
    assert all(_forms(log_dir, n) == {"compressed"} for n in range(1, SEGMENTS + 1))
    assert not [p for p in log_dir.iterdir() if p.name.endswith(".tmp")]
    baseline.check_readers()


@pytest.mark.parametrize("step", ["temp-synced", "published"])
def test_a_receiver_started_over_a_half_compressed_segment_serves_it_and_finishes_the_job(
        tmp_path: Path, make_harness, step: str) -> None:
    data = tmp_path / "data"
    traffic_log(data, clicks=CLICKS, segments=SEGMENTS)
    log_dir = data / "log"
    records = list(framing.iter_log(log_dir))
    _kill_at(log_dir, step)
    h = make_harness(data, settings=Settings(data))
    compressor = h.app.receiver.compressor
    deadline = time.monotonic() + 60
    while compressor.jobs < 1:  # the start's job: recovery, then the sealed segments
        assert time.monotonic() < deadline, "the start's compression job did not run"
        time.sleep(0.02)
    assert all(_forms(log_dir, n) == {"compressed"} for n in range(1, SEGMENTS + 1))
    assert not [p for p in log_dir.iterdir() if p.name.endswith(".tmp")]
    # the clicks of the half-compressed segment are known, and seq carries on
    ex = h.get("/api/postback", params={"api_key": "sp_live_acme", "click_id": cid(1), "transaction_id": "NEW-1"})
    assert (ex.status, ex.json["result"]) == (200, "recorded")
    assert ex.record["seq"] == len(records) + 1
    ex = h.get("/api/postback", params={"api_key": "sp_live_acme", "click_id": cid(1), "transaction_id": "T1"})
    assert ex.json["result"] == "duplicate"
    h.close()
    after = list(framing.iter_log(log_dir))
    assert after[:len(records)] == records and [r["seq"] for r in after] == list(range(1, len(records) + 3))
