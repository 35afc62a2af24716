"""Pipeline benchmark: every target of issue 13, each against its floor measured in the same run.

Generates a log with the offline generator (its segments compressed, as a receiver
compresses sealed ones: the log's real on-disk form, whose bytes per event are target 6),
measures DuckDB's bare `select count(*) from read_ndjson(...)` over the same files as the
floor (the .zst files, which DuckDB decompresses as the pipeline does), then times
`clickledger run` (a child process, so its peak RSS is its own: target 1), the same over a
tenth of the events (target 2: the peak must not grow with history), a run with nothing
new and one after appending 1% as a restarted receiver would, whose tables must equal a
full run's (target 3), `clickledger credit` over an earn-heavy log, cold and after +1%
(target 4), and `pipeline.load()` and each notebook run as a script (target 5). A target
not met prints as **NO** with its figure.

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
IDLE_TARGET = 0.05  # x the full run
RSS_GROWTH_TARGET = 1.5  # peak at N events / peak at N/10
RSS_TARGET_MIB = 4096
NOTEBOOK_SECONDS = 10
NOTEBOOK_RSS_MIB = 2048
ROOT = Path(__file__).resolve().parent.parent
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
            "append=sys.argv[4].startswith('append'), mix='earn' if sys.argv[4].endswith('earn') else 'all'); "
            "print(s.events, s.by_kind['postback recorded'], round(s.compress_wait_seconds, 1))")
# what a notebook does before its first view: open the warehouse, count, show a page
LOAD = ("import sys, pipeline, polars as pl; wh = pipeline.load(sys.argv[1]); "
        "n = wh.scan('conversions').select(pl.len()).collect().item(); "
        "page = wh.scan('conversions').head(50).collect(); print(f'{n:,} conversions, a page of {page.height}')")
# tables of two warehouses equal, row for row (the fx table and wallet tables included)
EQUAL = ("import sys, pipeline; from pipeline.warehouse import TABLES; a, b = sys.argv[1:3]; "
         "bad = [t for t in TABLES if t not in ('wallet_credits', 'wallet_balances') "
         "and not pipeline.load(a).tables[t].equals(pipeline.load(b).tables[t])]; print(','.join(bad) or 'equal')")


def _check(timed, what: str) -> None:
    if timed.returncode != 0:
        raise RuntimeError(f"{what} failed ({timed.returncode}): {timed.stderr[-2000:]}")


def disk_fields(figure: Figure) -> tuple:
    return (figure.name, figure.value, figure.unit, figure.target, figure.met, figure.reference, figure.ratio,
            figure.detail)


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


def _mib(rss: float) -> str:
    return f"{rss:,.0f} MiB"


def _fresh_copy(source: Path, target: Path) -> None:
    """A data directory with the same config, fx rates and log segments, and no warehouse."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    src, dst = DataDir(source), DataDir(target)
    shutil.copy(src.config_path, dst.config_path)
    shutil.copy(src.fx_rates_path, dst.fx_rates_path)
    dst.log_dir.symlink_to(src.log_dir.resolve())  # same segments, no staging cache


NOTEBOOKS = ("overview", "reconciliation", "troubleshooting")
STEPS = 14  # what the progress line counts: one per measured command


def run(work: Path, events: int = 10_000_000) -> list[Figure]:
    """Issue 13's targets at `events` events, each against its floor measured in this call."""
    from clickledger.progress import Progress

    work = Path(work)
    data = work / "pipeline-log"
    shutil.rmtree(data, ignore_errors=True)
    figures: list[Figure] = []
    shown = Progress()
    done = 0

    def timed(argv: list[str], what: str):
        nonlocal done
        print(f"  next: {what}", file=sys.stderr, flush=True)
        shown.update(done, STEPS, "bench", "steps")
        result = run_timed(argv, timeout=3600)
        _check(result, what)
        done += 1
        shown.update(done, STEPS, "bench", "steps")
        return result

    gen = timed(_child(GENERATE, str(data), str(events), "1", "new"), "generator")
    figures.append(Figure("4 pipeline", "offline generator", events / gen.seconds, "events/s", ">= 200k events/s",
                          events / gen.seconds >= 200_000,
                          detail=f"{events:,} events in {gen.seconds:.1f} s, peak {gen.peak_rss_mib:.0f} MiB; "
                                 f"segments written compressed (zstd level {LEVEL}), each while the next is "
                                 f"formatted, {gen.stdout.split()[2]} s waited for the last"))
    disk = log_on_disk(data, events)
    figures.append(Figure("13.6 log on disk", *disk_fields(disk)))

    # target 1: a cold full run against DuckDB's bare count(*) over the same files
    floor = timed(_child(FLOOR, str(data)), "DuckDB floor")
    full = timed([*CLI, "run", "--data", str(data)], "full run")
    ratio = full.seconds / floor.seconds
    figures.append(Figure("13.1 full run", f"clickledger run, cold, {events:,} events", full.seconds, "s",
                          "<= 3 x floor", ratio <= FULL_TARGET, reference=floor.seconds, ratio=ratio,
                          detail=f"floor: DuckDB count(*) of {floor.stdout.strip()} rows over the same "
                                 "files, the compressed segments"))
    figures.append(Figure("13.1 full run", "clickledger run, cold, peak RSS", full.peak_rss_mib, "MiB",
                          "<= 4 GiB", full.peak_rss_mib <= RSS_TARGET_MIB))

    # target 2: the peak of a full run over a tenth of the history
    small_events = max(1000, events // 10)
    small = work / "pipeline-log-small"
    shutil.rmtree(small, ignore_errors=True)
    timed(_child(GENERATE, str(small), str(small_events), "1", "new"), "generator, a tenth")
    small_run = timed([*CLI, "run", "--data", str(small)], "full run, a tenth")
    shutil.rmtree(small, ignore_errors=True)
    rss_ratio = full.peak_rss_mib / small_run.peak_rss_mib
    figures.append(Figure("13.2 memory flat", f"peak RSS, full run {events:,} vs {small_events:,} events",
                          full.peak_rss_mib, "MiB", "<= 1.5 x", rss_ratio <= RSS_GROWTH_TARGET,
                          reference=small_run.peak_rss_mib, ratio=rss_ratio,
                          detail=f"{small_events:,} events: {small_run.seconds:.1f} s"))

    # target 3: nothing new, then +1% in a new segment; tables equal to a full run's
    idle = timed([*CLI, "run", "--data", str(data)], "run, nothing new")
    idle_ratio = idle.seconds / full.seconds
    figures.append(Figure("13.3 incremental", "run with nothing new", idle.seconds, "s", "<= 0.05 x full",
                          idle_ratio <= IDLE_TARGET, reference=full.seconds, ratio=idle_ratio,
                          detail=f"peak {_mib(idle.peak_rss_mib)}"))
    extra = max(1, events // 100)
    timed(_child(GENERATE, str(data), str(extra), "2", "append"), "append 1%")
    inc = timed([*CLI, "run", "--data", str(data)], "run after +1%")
    fresh = work / "pipeline-log-full"
    _fresh_copy(data, fresh)
    timed([*CLI, "run", "--data", str(fresh)], "full run after the append (for the comparison)")
    same = timed(_child(EQUAL, str(data), str(fresh)), "table comparison")
    shutil.rmtree(fresh, ignore_errors=True)
    inc_ratio = inc.seconds / full.seconds
    figures.append(Figure("13.3 incremental", "run after +1% events", inc.seconds, "s", "<= 0.1 x full, equal tables",
                          inc_ratio <= INCREMENTAL_TARGET and same.stdout.strip() == "equal",
                          reference=full.seconds, ratio=inc_ratio,
                          detail=f"+{extra:,} events in a new segment; every table vs a full run over the same "
                                 f"log: {same.stdout.strip()}; peak {_mib(inc.peak_rss_mib)}"))

    # target 4: the credit job over an earn-heavy log (events/10 earn conversions), then after +1%
    earn_events = max(1000, int(events / 10 / 0.22))  # in earn traffic ~22% of records are conversions
    credit_data = work / "pipeline-credit"
    shutil.rmtree(credit_data, ignore_errors=True)
    earn_log = timed(_child(GENERATE, str(credit_data), str(earn_events), "3", "earn"), "earn log")
    conversions = int(earn_log.stdout.split()[1])
    credit = timed([*CLI, "credit", "--data", str(credit_data)], "credit, cold")
    credits = next((line.split()[1] for line in credit.stdout.splitlines() if "credits" in line), "?")
    timed(_child(GENERATE, str(credit_data), str(max(1, earn_events // 100)), "4", "append-earn"),
          "append 1% earn")
    again = timed([*CLI, "credit", "--data", str(credit_data)], "credit after +1%")
    again_credits = next((line.split()[1] for line in again.stdout.splitlines() if "credits" in line), "?")
    shutil.rmtree(credit_data, ignore_errors=True)
    figures.append(Figure("13.4 credit", "clickledger credit, cold, peak RSS", credit.peak_rss_mib, "MiB",
                          "<= 4 GiB", credit.peak_rss_mib <= RSS_TARGET_MIB,
                          detail=f"{earn_events:,} earn-app events, {conversions:,} earn conversions, {credits} "
                                 f"credits appended in {credit.seconds:.1f} s (staging included)"))
    credit_ratio = again.seconds / credit.seconds
    figures.append(Figure("13.4 credit", "clickledger credit after +1% events", again.seconds, "s",
                          "<= 0.1 x cold", credit_ratio <= INCREMENTAL_TARGET, reference=credit.seconds,
                          ratio=credit_ratio, detail=f"{again_credits} credits appended; peak "
                                                     f"{_mib(again.peak_rss_mib)}"))

    # target 5: each notebook's first view (the whole notebook run as a script) and pipeline.load()
    load = run_timed(_child(LOAD, str(data)))
    _check(load, "pipeline.load")
    figures.append(Figure("13.5 notebooks", "pipeline.load() and a page of conversions", load.seconds, "s",
                          "<= 10 s, <= 2 GiB", load.seconds <= NOTEBOOK_SECONDS and
                          load.peak_rss_mib <= NOTEBOOK_RSS_MIB, detail=f"{load.stdout.strip()}; peak "
                                                                        f"{_mib(load.peak_rss_mib)}"))
    for name in NOTEBOOKS:
        view = run_timed([PY, str(ROOT / "notebooks" / f"{name}.py"), "--", "--data", str(data)], timeout=1800)
        ok = view.returncode == 0
        figures.append(Figure("13.5 notebooks", f"{name} notebook, every cell run as a script", view.seconds, "s",
                              "<= 10 s, <= 2 GiB", ok and view.seconds <= NOTEBOOK_SECONDS
                              and view.peak_rss_mib <= NOTEBOOK_RSS_MIB,
                              detail=f"peak {_mib(view.peak_rss_mib)}" + ("" if ok else
                                                                            f"; FAILED: {view.stderr[-300:]}")))
    shown.close()
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
