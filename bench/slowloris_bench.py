"""Slowloris against a real receiver: what each slow-client measure gives alone (issue 15).

    python bench/slowloris_bench.py                 # every variant, 20 s each (about 2.5 minutes)
    python bench/slowloris_bench.py --seconds 30 --variants default

For each variant a receiver (`receiver.server.serve`, 64 threads: connection limit 256) is
started with only that measure on (receiver.connections.ConnectionLimits); 300 connections
from 127.0.0.2 trickle request heads at one byte per second, and a PeerClick postback from
127.0.0.1 is sent on a fresh connection every 100 ms (5 s timeout). Printed: the postbacks'
p50/p99/max, and the failures (no answer within 5 s). docs/deployment.md has one run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from clickledger.demo import free_port, stop_receiver, wait_healthy, write_demo_config  # noqa: E402
from tests.support.slowloris import Slowloris, peerclick_postbacks, probe_postbacks  # noqa: E402

VARIANTS = {
    "waitress alone": "ConnectionLimits(head_timeout=None, shed_oldest=False)",
    "head deadline 10 s": "ConnectionLimits(head_timeout=10, shed_oldest=False)",
    "head deadline 2 s": "ConnectionLimits(head_timeout=2, shed_oldest=False)",
    "per-address cap 32": "ConnectionLimits(head_timeout=None, shed_oldest=False, max_per_address=32)",
    "shed oldest waiting": "ConnectionLimits(head_timeout=None, shed_oldest=True)",
    "default": "ConnectionLimits()",
}


def start(data: Path, port: int, limits: str, threads: int) -> subprocess.Popen:
    code = ("import sys; from pathlib import Path; from receiver.server import serve; "
            "from receiver.connections import ConnectionLimits; "
            f"sys.exit(serve(Path({str(data)!r}), port={port}, threads={threads}, limits={limits}))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def run_variant(name: str, seconds: float, connections: int, threads: int) -> str:
    with tempfile.TemporaryDirectory(prefix="clickledger-slowloris-") as tmp:
        data = Path(tmp) / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        write_demo_config(data, public_url=url)
        proc = start(data, port, VARIANTS[name], threads)
        try:
            wait_healthy(url, proc=proc)
            location = requests.get(f"{url}/t/peer-aff3", allow_redirects=False, timeout=5).headers["Location"]
            click_id = location.split("clickid=")[1].split("&")[0]
            with Slowloris(("127.0.0.1", port), connections=connections) as attack:
                time.sleep(3)  # every attacking connection open before measuring
                result = probe_postbacks(peerclick_postbacks(("127.0.0.1", port), click_id), seconds)
            return (f"| {name} | {result.percentile(50) * 1000:.0f} | {result.percentile(99) * 1000:.0f} | "
                    f"{result.percentile(100) * 1000:.0f} | {result.failures} / {len(result.samples)} | "
                    f"{attack.opened} |")
        finally:
            stop_receiver(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="measuring time per variant")
    parser.add_argument("--connections", type=int, default=300, help="attacking connections")
    parser.add_argument("--threads", type=int, default=64, help="receiver threads (connection limit: 4 per thread)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"slowloris_bench: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    print("| measure | p50 ms | p99 ms | max ms | no answer in 5 s | attacking connections opened |")
    print("|---|---|---|---|---|---|")
    for name in names:
        print(run_variant(name, args.seconds, args.connections, args.threads), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
