"""Pipeline benchmark (issue 6, parts 4-6): full run, incremental run, credit and load.

Generates a log with the offline generator (its segments compressed, as a receiver
compresses sealed ones: the log's real on-disk form, whose bytes per event are a figure of
their own), measures DuckDB's bare `select count(*) from read_ndjson(...)` over the same
files as the floor (the .zst files, which DuckDB decompresses as the pipeline does), then times
`clickledger run` (a child process, so its peak RSS is its own), the incremental run
after appending 1% new events as a restarted receiver would, checks that the
incremental tables equal a full run's, and times `clickledger credit` over an
earn-heavy log and `pipeline.load()`.

    python bench/pipeline_bench.py --events 10000000 [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, print_table, run_timed  # noqa: E402
from receiver.compression import LEVEL  # noqa: E402
from receiver.contract.datadir import DataDir  # noqa: E402
from receiver.contract.framing import is_compressed, read_segment, segment_paths, segment_stat  # noqa: E402

PY = sys.executable
CLI = [PY, "-m", "clickledger.cli"]
FULL_TARGET = 3.0  # x the DuckDB floor
INCREMENTAL_TARGET = 0.10  # x the full run
RSS_TARGET_MIB = 4096
DISK_TARGET = 250  # bytes per event of sealed segments on disk (issue 13, target 6)
CREDIT_EARN_CONVERSIONS = 1_000_000


def _child(code: str, *args: str) -> list[str]:
    return [PY, "-c", code, *args]


# the floor reads exactly the files the pipeline reads: each segment's current form (compressed)
FLOOR = ("import sys, duckdb; from receiver.contract.framing import segment_paths; con = duckdb.connect(); "
         "con.execute('SET enable_progress_bar = false'); files = [str(p) for p in segment_paths(sys.argv[1] + '/log')]; "
         "print(con.execute('select count(*) from read_ndjson(?)', [files]).fetchall()[0][0])")
GENERATE = ("import sys; from pathlib import Path; from clickledger.simulator.offline import generate_log; "
            "s = generate_log(Path(sys.argv[1]), int(sys.argv[2]), seed=int(sys.argv[3]), "
            "append=sys.argv[4] == 'append', mix='earn' if sys.argv[4] == 'earn' else 'all'); "
            "print(s.events, s.by_kind['postback recorded'], round(s.compress_wait_seconds, 1))")
LOAD = ("import sys, pipeline; wh = pipeline.load(sys.argv[1]); "
        "print(sum(f.height for f in wh.tables.values()))")
# tables of two warehouses equal, row for row (the fx table and wallet tables included)
EQUAL = ("import sys, polars as pl; from pipeline.warehouse import TABLES; a, b = sys.argv[1:3]; "
         "bad = [t for t in TABLES if not pl.read_parquet(f'{a}/warehouse/{t}.parquet')"
         ".equals(pl.read_parquet(f'{b}/warehouse/{t}.parquet'))]; print(','.join(bad) or 'equal')")


def _check(timed, what: str) -> None:
    if timed.returncode != 0:
        raise RuntimeError(f"{what} failed ({timed.returncode}): {timed.stderr[-2000:]}")


def log_on_disk(data: Path, events: int) -> Figure:
    """Issue 13, target 6: bytes per event of the sealed (compressed) segments on disk."""
    segments = segment_paths(DataDir(data).log_dir)
    compressed = [p for p in segments if is_compressed(p)]
    in_plain = sum(read_segment(p).count(b"\n") for p in segments if not is_compressed(p))
    on_disk = sum(p.stat().st_size for p in compressed)
    lines = sum(segment_stat(p).size for p in compressed)
    per_event = on_disk / max(1, events - in_plain)
    return Figure("4 log on disk", "sealed segments on disk, bytes per event", per_event, "B/event",
                  f"<= {DISK_TARGET} B/event", per_event <= DISK_TARGET and len(compressed) == len(segments),
                  reference=lines / max(1, events - in_plain), ratio=per_event * max(1, events - in_plain) / max(1, lines),
                  detail=f"{len(compressed)} of {len(segments)} segments compressed (zstd level {LEVEL}), "
                         f"{on_disk / 2**20:,.0f} MiB for {lines / 2**20:,.0f} MiB of lines; "
                         "reference = plain bytes per event")


def run(work: Path, events: int = 10_000_000) -> list[Figure]:
    """Parts 4-6 at `events` events; every figure measured in this call."""
    work = Path(work)
    data = work / "pipeline-log"
    shutil.rmtree(data, ignore_errors=True)
    figures: list[Figure] = []

    gen = run_timed(_child(GENERATE, str(data), str(events), "1", "new"))
    _check(gen, "generator")
    figures.append(Figure("4 pipeline", "offline generator", events / gen.seconds, "events/s", ">= 200k events/s",
                          events / gen.seconds >= 200_000,
                          detail=f"{events:,} events in {gen.seconds:.1f} s, peak {gen.peak_rss_mib:.0f} MiB; "
                                 f"segments written compressed (zstd level {LEVEL}), each while the next is "
                                 f"formatted, {gen.stdout.split()[2]} s waited for the last"))
    figures.append(log_on_disk(data, events))

    floor = run_timed(_child(FLOOR, str(data)))
    _check(floor, "DuckDB floor")
    full = run_timed([*CLI, "run", "--data", str(data)])
    _check(full, "clickledger run")
    ratio = full.seconds / floor.seconds
    figures.append(Figure("4 pipeline full", "clickledger run, cold", full.seconds, "s", "<= 3 x floor",
                          ratio <= FULL_TARGET, reference=floor.seconds, ratio=ratio,
                          detail=f"floor: DuckDB count(*) of {floor.stdout.strip()} rows over the same "
                                 "files, the compressed segments"))
    figures.append(Figure("4 pipeline full", "clickledger run, peak RSS", full.peak_rss_mib, "MiB",
                          "<= 4 GiB", full.peak_rss_mib <= RSS_TARGET_MIB))

    # part 5: a restarted receiver appends 1% in a new segment; then compare with a full run
    extra = max(1, events // 100)
    app = run_timed(_child(GENERATE, str(data), str(extra), "2", "append"))
    _check(app, "append")
    inc = run_timed([*CLI, "run", "--data", str(data)])
    _check(inc, "incremental run")
    fresh = work / "pipeline-log-full"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    source, copy = DataDir(data), DataDir(fresh)
    shutil.copy(source.config_path, copy.config_path)
    shutil.copy(source.fx_rates_path, copy.fx_rates_path)
    copy.log_dir.symlink_to(source.log_dir.resolve())  # same segments, no staging cache
    again = run_timed([*CLI, "run", "--data", str(fresh)])
    _check(again, "full run after the append")
    same = run_timed(_child(EQUAL, str(data), str(fresh)))
    _check(same, "comparison")
    inc_ratio = inc.seconds / full.seconds
    figures.append(Figure("5 pipeline incremental", "run after +1% events", inc.seconds, "s", "<= 0.1 x full",
                          inc_ratio <= INCREMENTAL_TARGET and same.stdout.strip() == "equal",
                          reference=full.seconds, ratio=inc_ratio,
                          detail=f"+{extra:,} events in a new segment; tables vs a full run: "
                                 f"{same.stdout.strip()}; peak {inc.peak_rss_mib:.0f} MiB"))
    shutil.rmtree(fresh, ignore_errors=True)

    # part 6: credit over an earn-only log sized for events/10 earn conversions (1M at 10M):
    # in earn traffic ~22% of records are recorded conversions
    earn_events = max(1000, int(events / 10 / 0.22))
    credit_data = work / "pipeline-credit"
    shutil.rmtree(credit_data, ignore_errors=True)
    earn_log = run_timed(_child(GENERATE, str(credit_data), str(earn_events), "3", "earn"))
    _check(earn_log, "credit log")
    conversions = int(earn_log.stdout.split()[1])  # recorded postbacks: one conversion each
    credit = run_timed([*CLI, "credit", "--data", str(credit_data)])
    _check(credit, "clickledger credit")
    credits = next((line.split()[1] for line in credit.stdout.splitlines() if "credits" in line), "?")
    figures.append(Figure("6 credit", "clickledger credit, cold", credit.seconds, "s", "-", None,
                          detail=f"{earn_events:,} earn-app events, {conversions:,} earn conversions (staged in the same "
                                 f"command), {credits} credits appended"))
    figures.append(Figure("6 credit", "clickledger credit, peak RSS", credit.peak_rss_mib, "MiB", "-", None))
    shutil.rmtree(credit_data, ignore_errors=True)
    load = run_timed(_child(LOAD, str(data)))
    _check(load, "pipeline.load")
    figures.append(Figure("6 load", "pipeline.load()", load.seconds, "s", "-", None,
                          detail=f"{load.stdout.strip()} rows in all tables, peak {load.peak_rss_mib:.0f} MiB"))
    figures.append(Figure("6 load", "pipeline.load(), peak RSS", load.peak_rss_mib, "MiB", "-", None))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    if args.work:
        print_table(run(args.work, args.events))
        return 0
    with tempfile.TemporaryDirectory(prefix="clickledger-bench-") as tmp:
        print_table(run(Path(tmp), args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
