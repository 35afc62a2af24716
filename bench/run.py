"""`make bench`: every part of the benchmark in one run, one table, on this machine.

    python bench/run.py                # 10M clicks for the start-up, 10M events for the pipeline (issue 13)
    python bench/run.py --events 1000000 --parts 4   # the pipeline's targets at 1M events
    python bench/run.py --quick        # small sizes, to check the bench itself works (a minute)
    python bench/run.py --parts 1,2    # only some parts (1-2 receiver, 3 start-up, 4-6 pipeline)

Every figure is measured in this run, each against its own floor or ceiling measured in
the same run; the table is markdown (docs/benchmarks.md holds one run of it) and is also
written to DATA/bench/last-run.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from common import Figure, print_table  # noqa: E402

# The pipeline parts run at 10M events, the size issue 13's targets are stated at (`--events N`
# for another size; the 1M run the memory target compares with is part of them).
FULL = {"seconds": 8, "rounds": 3, "clicks": 10_000_000, "events": 10_000_000}
QUICK = {"seconds": 1, "rounds": 1, "clicks": 50_000, "events": 50_000}


def machine() -> str:
    mem_kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal:")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return (f"{os.cpu_count()} cores, {mem_kib / 1024 / 1024:.0f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, commit {commit}, "
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the bench, measures little")
    parser.add_argument("--parts", default="1,2,3,4,5,6", help="comma-separated part numbers")
    parser.add_argument("--events", type=int, help="events of the pipeline parts (default: 10M, 50k with --quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench", help="where last-run.md goes")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    if args.events:
        sizes["events"] = args.events
    parts = {int(p) for p in args.parts.split(",") if p.strip()}
    work = Path(tempfile.mkdtemp(prefix="clickledger-bench-"))
    figures: list[Figure] = []
    started = time.perf_counter()
    try:
        if parts & {1, 2}:
            import receiver_bench

            print("parts 1-2: receiver vs the bare Falcon+waitress ceiling under wrk...", file=sys.stderr, flush=True)
            figures += [f for f in receiver_bench.run(work / "receiver", seconds=sizes["seconds"], rounds=sizes["rounds"])
                        if int(f.part.split()[0]) in parts]
        if 3 in parts:
            import startup_bench

            print(f"part 3: receiver start-up over {sizes['clicks']:,} clicks...", file=sys.stderr, flush=True)
            figures += startup_bench.run(work / "startup", clicks=sizes["clicks"])
            shutil.rmtree(work / "startup", ignore_errors=True)  # gigabytes: free them before part 4
        if parts & {4, 5, 6}:
            import pipeline_bench

            print(f"parts 4-6: pipeline over {sizes['events']:,} events...", file=sys.stderr, flush=True)
            figures += pipeline_bench.run(work / "pipeline", events=sizes["events"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    header = f"clickledger bench{' (quick sizes)' if args.quick else ''}: {machine()}; took {elapsed / 60:.1f} min"
    print(header)
    print_table(figures)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "last-run.md", "w", encoding="utf-8") as out:
        print(header + "\n", file=out)
        print_table(figures, out=out)
    unmet = [f for f in figures if f.met is False]
    print(f"{len(figures)} figures, {len(unmet)} targets not met" + (
        ": " + "; ".join(f"{f.part}: {f.name}" for f in unmet) if unmet else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
