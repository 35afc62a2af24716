"""Issue 6, part 3: receiver start-up with 10M clicks in the log.

Writes a log of N click records (as the receiver writes them), then measures real
`clickledger serve` processes:
  (a) the first start, with no index snapshot: every segment is read and its sidecar built;
  (b) the start with sidecars and base: seconds from spawning the process until /healthz
      answers 200, and the resident memory per click: VmRSS of that server minus VmRSS of a
      server over an empty log, divided by N (both read from /proc/PID/status once healthy);
and checks postbacks for known clicks (sampled from the log) and unknown ids get the
answers the clicks call for. It also times ClickIndex.get in this process over the same
index (known and unknown ids).

Run alone: .venv/bin/python bench/startup_bench.py [--clicks N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, print_table  # noqa: E402

from clickledger.demo import free_port, stop_receiver, write_demo_config  # noqa: E402
from receiver.contract.datadir import DataDir  # noqa: E402
from receiver.contract.framing import iter_lines, segment_paths  # noqa: E402
from receiver.contract.timeutil import parse_utc  # noqa: E402

PART = "3 receiver start-up"
START_TARGET_S = 10.0
BYTES_TARGET = 64.0
DEMO_KEYS = {"acme": "sp_live_acme", "moustache": "mlk_live_7f3a9c"}

def write_click_log(data: Path, clicks: int, seed: int = 1) -> str:
    """A log of `clicks` recorded clicks (link and earn), as the receiver writes them, by the
    offline generator (`clickledger simulate --offline --mix clicks`); returns its summary."""
    from clickledger.simulator.offline import generate_log

    return generate_log(data, clicks, seed=seed, mix="clicks").describe()


def _vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    """`clickledger serve` in a child process, timed from spawn to the first 200 from /healthz."""

    def __init__(self, data: Path, timeout: float = 600):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - read after the process ends, closed in stop()
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clickledger.cli", "serve", "--data", str(data), "--port", str(self.port),
             "--threads", "16"], stdout=self.out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the receiver exited with {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as resp:
                    if resp.status == 200:
                        self.health = json.loads(resp.read())
                        break
            except OSError:
                pass
            if time.perf_counter() - started > timeout:
                self.stop()
                raise RuntimeError("the receiver did not become healthy")
            time.sleep(0.02)
        self.seconds = time.perf_counter() - started
        self.rss_kib = _vm_rss_kib(self.proc.pid)

    def output(self) -> str:
        if self.out.closed:
            return self._text
        self.out.seek(0)
        return self.out.read().decode(errors="replace")

    def summary(self) -> str:
        return next((line for line in self.output().splitlines() if line.startswith("index:")), "")

    def stop(self) -> None:
        stop_receiver(self.proc, timeout=120)  # a clean shutdown may still be writing the base
        self._text = self.output()
        self.out.close()

    def postback(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
                body = json.loads(resp.read())
                return resp.status, body.get("result") or body.get("error")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read()).get("error")


def _sample_clicks(data: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """Clicks read back from the log (first, middle and last segments) for the postback checks."""
    segments = segment_paths(DataDir(data).log_dir)
    picked = {segments[0], segments[len(segments) // 2], segments[-1]}
    clicks = [rec["fields"] for seg in picked for _, rec in iter_lines(seg)
              if isinstance(rec, dict) and rec.get("kind") == "click" and rec.get("result") == "click"]
    return random.Random(seed).sample(clicks, min(count, len(clicks)))


def _check_postbacks(server: Server, data: Path, samples: int, seed: int) -> tuple[int, int, list[str]]:
    """(checked, wrong, examples of wrong answers): known clicks answer recorded (or click_expired
    when their expires_at has passed); random UUIDs answer click_not_found."""
    now = datetime.now(UTC)
    run_tag = f"{time.time_ns():x}"  # fresh transaction ids: a reused log already holds earlier runs' ones
    wrong: list[str] = []
    checked = 0
    for n, fields in enumerate(_sample_clicks(data, samples, seed)):
        partner, cid = fields["partner_id"], fields["click_id"]
        if partner == "acme":
            path = f"/api/postback?api_key={DEMO_KEYS['acme']}&click_id={cid}&transaction_id=T{n}-{run_tag}&payout=1"
        elif partner == "moustache":
            path = f"/postback/{DEMO_KEYS['moustache']}?click_id={cid}&transaction_id=T{n}-{run_tag}&payout=1"
        elif partner == "peerclick":
            path = f"/postback?cid={cid}&txid=T{n}-{run_tag}&payout=1"
        else:
            continue
        expires = fields["expires_at"]
        expected = "click_expired" if expires and parse_utc(expires) < now else "recorded"
        got = server.postback(path)[1]
        checked += 1
        if got != expected:
            wrong.append(f"{cid}: {got} (expected {expected})")
    rng = random.Random(seed + 1)
    for n in range(samples):
        cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        got = server.postback(f"/api/postback?api_key={DEMO_KEYS['acme']}&click_id={cid}&transaction_id=U{n}")[1]
        checked += 1
        if got != "click_not_found":
            wrong.append(f"unknown {cid}: {got}")
    return checked, len(wrong), wrong[:5]


def _lookup_micros(data: Path, seed: int) -> tuple[float, float]:
    """Mean µs of ClickIndex.get for known and for unknown ids, over the index the server loads."""
    from receiver.snapshot import load_indexes

    loaded = load_indexes(DataDir(data).log_dir)
    known = [f["click_id"] for f in _sample_clicks(data, 20_000, seed)]
    rng = random.Random(seed + 2)
    unknown = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20_000)]
    get = loaded.clicks.get
    assert all(get(c) is not None for c in known) and all(get(c) is None for c in unknown)
    timings = []
    for ids in (known, unknown):
        started = time.perf_counter()
        for _ in range(5):
            for c in ids:
                get(c)
        timings.append((time.perf_counter() - started) / (5 * len(ids)) * 1e6)
    return timings[0], timings[1]


def run(work: Path, clicks: int = 10_000_000, seed: int = 1, reuse: bool = False) -> list[Figure]:
    """`reuse`: keep a log already in WORK/startup (its snapshots are deleted), e.g. to re-measure."""
    work = Path(work)
    data, empty = work / "startup", work / "startup-empty"
    shutil.rmtree(empty, ignore_errors=True)
    write_demo_config(empty)
    started = time.perf_counter()
    if not (reuse and DataDir(data).log_dir.is_dir()):
        shutil.rmtree(data, ignore_errors=True)
        write_click_log(data, clicks, seed)
    shutil.rmtree(DataDir(data).index_dir, ignore_errors=True)
    written = time.perf_counter() - started
    log_segments = segment_paths(DataDir(data).log_dir)
    log_bytes = sum(p.stat().st_size for p in log_segments)
    segments = len(log_segments)
    figures: list[Figure] = []

    first = Server(data)
    first_summary = first.summary()
    clicks = first.health["clicks"]  # what the server knows, so a reused log is measured right
    first.stop()
    figures.append(Figure(PART, f"first start, no snapshot ({clicks:,} clicks)", first.seconds, "s", "-", None,
                          detail=f"spawn to /healthz 200; every segment read and its sidecar built; "
                                 f"server said: {first_summary}; log {log_bytes / 2**30:.1f} GiB in "
                                 f"{segments} segments, written in {written:.0f} s"))

    empty_server = Server(empty)
    empty_rss = empty_server.rss_kib
    empty_server.stop()

    second = Server(data)
    try:
        checked, wrong, examples = _check_postbacks(second, data, 200, seed)
    finally:
        second.stop()
    figures.append(Figure(PART, f"start with sidecars ({clicks:,} clicks)", second.seconds, "s",
                          f"<= {START_TARGET_S:.0f} s", second.seconds <= START_TARGET_S,
                          detail=f"spawn to /healthz 200; server said: {second.summary()}"))
    per_click = (second.rss_kib - empty_rss) * 1024 / clicks
    figures.append(Figure(PART, "resident memory of the click index", per_click, "B/click",
                          f"<= {BYTES_TARGET:.0f} B/click", per_click <= BYTES_TARGET,
                          reference=empty_rss / 1024,
                          detail=f"(VmRSS {second.rss_kib / 1024:.0f} MiB after start - VmRSS "
                                 f"{empty_rss / 1024:.0f} MiB of a server over an empty log) / clicks; "
                                 "reference = empty server MiB"))
    figures.append(Figure(PART, "postbacks answered correctly after the start", checked - wrong, "answers",
                          f"= {checked}", wrong == 0,
                          detail="known clicks: recorded (click_expired past expires_at); random UUIDs: "
                                 f"click_not_found{'; wrong: ' + '; '.join(examples) if examples else ''}"))
    known_us, unknown_us = _lookup_micros(data, seed)
    figures.append(Figure(PART, "ClickIndex.get, known id", known_us, "µs", "few µs", None,
                          detail="mean over 20k sampled ids x5, in-process over the same index"))
    figures.append(Figure(PART, "ClickIndex.get, unknown id", unknown_us, "µs", "few µs", None,
                          detail="mean over 20k random UUIDs x5"))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10_000_000)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="measure the log already in WORK/startup")
    args = parser.parse_args()
    if args.work is not None:
        print_table(run(args.work, args.clicks, args.seed, args.reuse))
        return 0
    with tempfile.TemporaryDirectory(prefix="clickledger-startup-") as work:
        print_table(run(Path(work), args.clicks, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
