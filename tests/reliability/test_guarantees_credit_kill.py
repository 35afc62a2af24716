"""Guarantee 6: `clickledger credit` killed at any point and re-run never credits twice.

The honest test: the real command in a subprocess (`python -m clickledger.cli credit`),
SIGKILLed after a random delay over a ledger batch of thousands of entries, then run
again. After every kill the ledger holds each entry_id at most once and each earn
click at most one credit; after a final clean run it holds exactly the entries one
uninterrupted run writes (batch_id and credited_at aside).

`append_entries` writes a batch with one write(2) and then fsyncs, so a SIGKILL
lands before the append (nothing written) or after it (all written): a kill cannot
tear a line. A power loss can (the page cache reaches the disk in pieces), so after
some kills the test also cuts the lines the killed job appended at a random byte,
as a power loss would, and the next job must repair that.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pipeline
from pipeline.wallet import ledger_path, read_ledger
from tests.support.log_builder import LogBuilder, cid, make_data_dir
from tests.support.paths import REPO

CONVERSIONS = 2000
REVERSALS = 150
IDENTITY = ("entry_id", "kind", "user_id", "click_id", "transaction_id", "amount", "currency", "event_id", "seq")


def earn_log(n: int = CONVERSIONS, reversals: int = REVERSALS, *, later: bool = True) -> LogBuilder:
    """The first half of `n` earn conversions of three users (credited by an earlier, clean job);
    with `later`, the second half and `reversals` chargebacks of the first half too, which the
    killed job must credit and debit. A few retries on a new transactionId (never credited: one
    click = one credit) and a few pending ones are mixed in."""
    b = LogBuilder()
    first = n // 2
    for i in range(1, (n if later else first) + 1):
        b.click(cid(i), offer_id="taskwall-tasks", user_id=f"u{i % 3 + 1}", product_id="task-1", ttl_hours=24)
        status = "pending" if i % 97 == 0 else "completed"
        b.postback(cid(i), amount=f"{i % 50 + 1}.{i % 100:02d}", status=status, dialect="earn",
                   transaction_id=f"t-{i}", status_updates=True)
        if i % 211 == 0:  # an advertiser retrying with a new transactionId
            b.postback(cid(i), amount="9", status="completed", dialect="earn", transaction_id=f"t-{i}-retry",
                       status_updates=True)
        if later and i == first:
            for j in range(7, 7 + 6 * reversals, 6):
                b.postback(cid(j), status="chargeback", dialect="earn", transaction_id=f"t-{j}",
                           result="duplicate", status_updates=True)
    return b


def credit_cmd(data: Path) -> list[str]:
    return [sys.executable, "-m", "clickledger.cli", "credit", "--data", str(data)]


def ledger_entries(data: Path) -> list[dict]:
    return read_ledger(ledger_path(data)).entries


def identity(entries: list[dict]) -> set[tuple]:
    return {tuple(e[k] for k in IDENTITY) for e in entries}


def assert_never_twice(data: Path) -> None:
    """The invariants that hold after every kill, before any repair."""
    entries = ledger_entries(data)
    ids = Counter(e["entry_id"] for e in entries)
    assert max(ids.values(), default=1) == 1, [i for i, n in ids.items() if n > 1][:5]
    credited_clicks = Counter(e["click_id"] for e in entries if e["kind"] == "credit")
    assert max(credited_clicks.values(), default=1) == 1
    credits = {(e["click_id"], e["transaction_id"]) for e in entries if e["kind"] == "credit"}
    for e in entries:
        if e["kind"] == "debit":
            assert (e["click_id"], e["transaction_id"]) in credits  # a debit only after its credit


@dataclass
class KillStats:
    cycles: int = 0
    before_append: int = 0  # killed with the ledger as it was
    after_append: int = 0  # killed after its lines were written (and maybe fsync'd)
    finished: int = 0  # the job ended before the kill
    torn_by_kill: int = 0
    power_cuts: int = 0  # lines of a killed job cut at a random byte afterwards
    delays: list[float] = field(default_factory=list)


def timed_clean_run(data: Path) -> float:
    start = time.monotonic()
    subprocess.run(credit_cmd(data), cwd=REPO, check=True, capture_output=True)
    return time.monotonic() - start


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_and_kill(proc: subprocess.Popen, path: Path, before: int, delay: float | None, after_growth: float,
                  limit: float) -> bool:
    """SIGKILL `proc` after `delay` seconds, or (delay None) `after_growth` seconds after the ledger
    grew; True when the job finished first."""
    start = time.monotonic()
    grew_at = None
    while proc.poll() is None:
        now = time.monotonic()
        if grew_at is None and size(path) != before:
            grew_at = now
        due = (delay is not None and now - start >= delay) or (grew_at is not None and delay is None
                                                                and now - grew_at >= after_growth)
        if due or now - start > limit:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return False
        time.sleep(0.001)
    return True


def kill_cycle(data: Path, delay: float | None, rng: random.Random, stats: KillStats, limit: float) -> None:
    """One job, killed at `delay` (or just after it appended, when None); the ledger checked after."""
    path = ledger_path(data)
    before = size(path)
    proc = subprocess.Popen(credit_cmd(data), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = wait_and_kill(proc, path, before, delay, rng.uniform(0, 0.05), limit)
    stats.cycles += 1
    stats.delays.append(-1.0 if delay is None else delay)
    after = size(path)
    if finished:
        stats.finished += 1
    elif after == before:
        stats.before_append += 1
    else:
        stats.after_append += 1
        if read_ledger(path).torn is not None:
            stats.torn_by_kill += 1
        elif rng.random() < 0.5:  # a power loss: only part of the killed job's bytes reached the disk
            with open(path, "r+b") as f:
                f.truncate(rng.randrange(before, after))
            stats.power_cuts += 1
    assert_never_twice(data)


def prepare(data: Path, first_ledger: bytes) -> Path:
    """A data dir whose ledger holds the earlier clean job's entries and whose log has the later ones."""
    make_data_dir(data)
    ledger_path(data).parent.mkdir(parents=True)
    ledger_path(data).write_bytes(first_ledger)
    earn_log().write(data)
    return data


def reference(tmp: Path) -> tuple[bytes, set[tuple], float]:
    """(the earlier job's ledger, the entries of uninterrupted jobs over the whole log, the run time)."""
    ref = make_data_dir(tmp / "reference")
    earn_log(later=False).write(ref)
    subprocess.run(credit_cmd(ref), cwd=REPO, check=True, capture_output=True)
    first_ledger = ledger_path(ref).read_bytes()
    earn_log().write(ref)
    elapsed = timed_clean_run(ref)
    kinds = Counter(e["kind"] for e in ledger_entries(ref)[first_ledger.count(b"\n"):])
    assert kinds["credit"] > 950 and kinds["debit"] > 100  # the killed batch is large, debits included
    return first_ledger, identity(ledger_entries(ref)), elapsed


def file_hashes(data: Path) -> dict[str, str]:
    files = sorted((data / "warehouse").glob("*.parquet")) + [ledger_path(data)]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def kill_and_rerun(tmp: Path, *, cycles: int, seed: int, per_scenario: int = 7) -> KillStats:
    rng = random.Random(seed)
    first_ledger, expected, clean = reference(tmp)
    stats = KillStats()
    scenario = 0
    while stats.cycles < cycles:
        scenario += 1
        data = prepare(tmp / f"run-{scenario}", first_ledger)
        for _ in range(min(per_scenario, cycles - stats.cycles)):
            # half the kills at a random moment of a whole job, half within 50 ms of its append
            delay = rng.uniform(0.1 * clean, 1.1 * clean) if rng.random() < 0.5 else None
            kill_cycle(data, delay, rng, stats, limit=3 * clean)
        subprocess.run(credit_cmd(data), cwd=REPO, check=True, capture_output=True)  # the final clean run
        assert read_ledger(ledger_path(data)).torn is None
        assert_never_twice(data)
        assert identity(ledger_entries(data)) == expected
    # and re-running changes nothing: the ledger and every table, byte for byte
    pipeline.run(data)
    before = file_hashes(data)
    assert pipeline.credit(data).appended == []
    pipeline.run(data)
    assert file_hashes(data) == before
    return stats


def report(stats: KillStats) -> str:
    return (f"{stats.cycles} kills: {stats.before_append} before the append, {stats.after_append} after it "
            f"({stats.torn_by_kill} torn by the kill, {stats.power_cuts} cut as by a power loss), "
            f"{stats.finished} finished first")


def test_credit_killed_at_random_points_never_credits_twice(tmp_path):
    started = time.monotonic()
    stats = kill_and_rerun(tmp_path, cycles=20, seed=int(os.environ.get("KILL_SEED", "6")))
    print(report(stats), f"in {time.monotonic() - started:.1f} s")
    assert stats.before_append and stats.after_append  # the kills really landed on both sides


@pytest.mark.slow
def test_credit_killed_at_random_points_many_cycles(tmp_path):
    stats = kill_and_rerun(tmp_path, cycles=100, per_scenario=10, seed=int(os.environ.get("KILL_SEED", "60")))
    print(report(stats))
    assert stats.before_append and stats.after_append and stats.power_cuts
