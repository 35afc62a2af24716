"""Receiver benchmark: durable postbacks and click redirects against the bare stack's ceiling.

Both servers run the same waitress settings (receiver.server.waitress_options) on
loopback; load comes from wrk with Lua scripts that vary click and transaction ids
and check every answer. Every figure is measured in this run: the median of alternating
runs of ours and the ceiling (one run on a 2-core machine swings by a third).

    python bench/receiver_bench.py [--seconds 8] [--rounds 3] [--threads 64]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from common import Figure, print_table  # noqa: E402

from clickledger.demo import (  # noqa: E402
    free_port,
    start_receiver,
    stop_receiver,
    wait_healthy,
    write_demo_config,
)


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    checked: dict[str, int]


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("installing wrk (Debian package)...", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    if match is None:
        raise ValueError(f"wrk printed a latency this bench cannot read: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def run_wrk(wrk: str, url: str, script: Path, connections: int, seconds: int,
            env: dict[str, str]) -> WrkResult:
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
        env={**os.environ, **env, "RUN_ID": f"{script.stem}{connections}-{os.urandom(4).hex()}"},
    ).stdout
    if "Requests/sec:" not in out or "99%" not in out:
        raise RuntimeError(f"wrk gave no figures for {url}:\n{out[-2000:]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    check = re.search(r"CHECK (.*)", out)
    checked = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", check.group(1))} if check else {}
    return WrkResult(rps, p50, p99, checked)


def make_clicks(data: Path, count: int) -> list[str]:
    """Real clicks through the receiver in-process, so postbacks are `recorded`."""
    import falcon.testing

    from receiver.app import create_app

    app = create_app(data)
    client = falcon.testing.TestClient(app)
    ids = []
    try:
        for _ in range(count):
            location = client.simulate_get("/t/acme-aff1").headers["location"]
            ids.append(parse_qs(urlsplit(location).query)["click_id"][0])
    finally:
        app.receiver.close()
    return ids


def start_ceiling(port: int, threads: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(BENCH / "ceiling.py"), "--port", str(port),
                             "--threads", str(threads)], cwd=ROOT, stdout=subprocess.DEVNULL)


def _server_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (what the server itself spent, not wrk)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SCENARIOS = (
    # part, figure, wrk script, connections, p99 target in ms (None: no latency target)
    ("1 receiver postbacks", "durable recorded postbacks/s", "postback.lua", 16, 20.0),
    ("1 receiver postbacks", "durable recorded postbacks/s", "postback.lua", 64, None),
    ("2 receiver clicks", "/t/{slug} 302 redirects/s", "click.lua", 16, None),
    ("2 receiver clicks", "/t/{slug} 302 redirects/s", "click.lua", 64, None),
)
RATIO_TARGET = 0.8


@dataclass
class Measured:
    """One scenario on one server: wrk's figures and the server's own CPU per answer."""

    wrk: WrkResult
    cpu_us: float


def _measure(wrk: str, proc: subprocess.Popen, port: int, script: str, conns: int, seconds: int,
             env: dict[str, str]) -> Measured:
    cpu0 = _server_cpu_seconds(proc.pid)
    result = run_wrk(wrk, f"http://127.0.0.1:{port}", BENCH / script, conns, seconds, env)
    cpu1 = _server_cpu_seconds(proc.pid)
    return Measured(result, 1e6 * (cpu1 - cpu0) / max(1.0, result.rps * seconds))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run(work: Path, seconds: int = 8, threads: int = 64, clicks: int = 5000, rounds: int = 3) -> list[Figure]:
    """Parts 1 and 2: the receiver against the ceiling, alternating, on the same waitress settings.

    Each scenario runs `rounds` times on each server, alternating ours and the ceiling's, and
    each figure is the median (a single run on this machine swings by a third)."""
    wrk = ensure_wrk()
    work.mkdir(parents=True, exist_ok=True)
    write_demo_config(work)
    ids_file = work / "click_ids.txt"
    ids_file.write_text("\n".join(make_clicks(work, clicks)) + "\n")
    env = {"CLICK_IDS": str(ids_file)}
    ours_port, ceiling_port = free_port(), free_port()
    ours = start_receiver(work, ours_port, threads=threads)
    ceiling = start_ceiling(ceiling_port, threads)
    figures = []
    try:
        wait_healthy(f"http://127.0.0.1:{ours_port}", proc=ours)
        _wait_port(ceiling_port)
        for part, name, script, conns, p99_target in SCENARIOS:
            mine: list[Measured] = []
            top: list[Measured] = []
            for _ in range(rounds):
                mine.append(_measure(wrk, ours, ours_port, script, conns, seconds, env))
                top.append(_measure(wrk, ceiling, ceiling_port, script, conns, seconds, env))
            rps, top_rps = _median([m.wrk.rps for m in mine]), _median([m.wrk.rps for m in top])
            p50, p99 = _median([m.wrk.p50_ms for m in mine]), _median([m.wrk.p99_ms for m in mine])
            top_p99 = _median([m.wrk.p99_ms for m in top])
            ratio = rps / top_rps if top_rps else 0.0
            checked = " ".join(f"{k}={sum(m.wrk.checked.get(k, 0) for m in mine)}"
                               for k in mine[0].wrk.checked)
            runs = "" if rounds == 1 else (
                f"median of {rounds} alternating runs (ours {', '.join(f'{m.wrk.rps:,.0f}' for m in mine)}; "
                f"ceiling {', '.join(f'{m.wrk.rps:,.0f}' for m in top)}); ")
            detail = (f"{runs}p50 {p50:.1f} ms, p99 {p99:.1f} ms (ceiling p99 {top_p99:.1f}); server CPU "
                      f"{_median([m.cpu_us for m in mine]):.0f} us/req vs ceiling "
                      f"{_median([m.cpu_us for m in top]):.0f}; {checked}")
            figures.append(Figure(part, f"{name}, {conns} conns", rps, "req/s", f">= {RATIO_TARGET} x ceiling",
                                  ratio >= RATIO_TARGET, top_rps, ratio, detail))
            if p99_target is not None:
                figures.append(Figure(part, f"p99 latency, {conns} conns", p99, "ms",
                                      f"<= {p99_target:g} ms", p99 <= p99_target, top_p99, None,
                                      "reference: the ceiling's p99 (medians)"))
    finally:
        stop_receiver(ours)
        stop_receiver(ceiling)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--clicks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="runs per scenario and server; the median counts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clickledger-bench-"))
    try:
        figures = run(work, args.seconds, args.threads, args.clicks, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"receiver benchmark: wrk -t2, {args.rounds} x {args.seconds} s per figure and server, "
          f"waitress threads={args.threads}, "
          f"{os.cpu_count()} cores")
    print_table(figures)
    return 0


def _wait_port(port: int, timeout: float = 15.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


if __name__ == "__main__":
    sys.exit(main())
