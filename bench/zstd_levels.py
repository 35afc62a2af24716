"""Which zstd level for sealed log segments: bytes per event and speeds, measured on one segment.

Writes a log with the offline generator (the traffic mix of a 10M-event log: 1,500-click
template days; plain, not compressed), takes its first full 64 MiB segment, and measures
for each level (and long-distance matching, and a dictionary trained on another seed's
segment) the compressed bytes per event, the compression and the decompression speed
(best of a few runs, one core), checking each round trip. The table goes to
docs/log-format.md ("Compressed segments") with the reasoning for the level chosen.

    .venv/bin/python bench/zstd_levels.py [--segment PATH] [--levels 1,3,6,9,12,15,19]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clickledger.simulator.offline import generate_log, template_clicks  # noqa: E402
from receiver.compression import LEVEL  # noqa: E402
from receiver.contract.framing import read_segment, segment_paths  # noqa: E402

SEGMENT_EVENTS = 80_000  # ~1.1 KB each: more than one 64 MiB segment
MIN_SECONDS = 1.5  # runs of a variant are repeated until this long (at least once, at most 5 times)


def sample_segment(work: Path, seed: int) -> bytes:
    """The first (full, 64 MiB) segment of a plain log of the 10M-event traffic mix."""
    out = work / f"seed-{seed}"
    generate_log(out, SEGMENT_EVENTS, seed=seed, clicks_per_day=template_clicks(10_000_000),
                 end=date(2025, 6, 30), compress=False)
    return read_segment(segment_paths(out / "log")[0])


def best_seconds(run) -> tuple[float, bytes]:  # noqa: ANN001 - a callable of nothing
    best, result, spent, runs = float("inf"), b"", 0.0, 0
    while runs < 5 and (runs == 0 or spent < MIN_SECONDS):
        started = time.perf_counter()
        result = run()
        took = time.perf_counter() - started
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best, result


def measure(data: bytes, name: str, compressor: zstandard.ZstdCompressor,
            decompressor: zstandard.ZstdDecompressor) -> dict:
    events = data.count(b"\n")
    seconds, frame = best_seconds(lambda: compressor.compress(data))
    back_seconds, back = best_seconds(lambda: decompressor.decompress(frame))
    if back != data:
        raise RuntimeError(f"{name}: the round trip changed the bytes")
    return {"variant": name, "bytes_per_event": len(frame) / events, "ratio": len(data) / len(frame),
            "compress_mb_s": len(data) / seconds / 1e6, "decompress_mb_s": len(data) / back_seconds / 1e6,
            "events_per_s": events / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment", type=Path, help="measure this segment instead of a generated one")
    parser.add_argument("--levels", default="1,3,6,9,12,15,19")
    parser.add_argument("--no-extras", action="store_true", help="levels only: no LDM, no dictionary")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="clickledger-zstd-") as tmp:
        data = read_segment(args.segment) if args.segment else sample_segment(Path(tmp), seed=1)
        other = None if args.no_extras else sample_segment(Path(tmp), seed=2)
    events = data.count(b"\n")
    print(f"segment: {len(data):,} bytes, {events:,} events, {len(data) / events:.0f} bytes/event plain; "
          f"zstandard {zstandard.__version__} (libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))})",
          file=sys.stderr)
    plain = zstandard.ZstdDecompressor()
    rows = []
    for level in levels:
        rows.append(measure(data, f"level {level}", zstandard.ZstdCompressor(level=level, write_checksum=True), plain))
        print(rows[-1], file=sys.stderr, flush=True)
    if other is not None:
        for level in (3, 9, 19):
            if level not in levels:
                continue
            params = zstandard.ZstdCompressionParameters.from_level(
                level, source_size=len(data), enable_ldm=True, window_log=27, write_checksum=True)
            rows.append(measure(data, f"level {level}, long-distance matching (128 MiB window)",
                                zstandard.ZstdCompressor(compression_params=params), plain))
            print(rows[-1], file=sys.stderr, flush=True)
        samples = other.splitlines(keepends=True)[:20_000]
        dictionary = zstandard.train_dictionary(112_640, samples, level=3)
        rows.append(measure(data, "level 3, dictionary of 110 KiB trained on another seed's segment",
                            zstandard.ZstdCompressor(level=3, dict_data=dictionary, write_checksum=True),
                            zstandard.ZstdDecompressor(dict_data=dictionary)))
    print("| variant | bytes/event | ratio | compression MB/s | events/s compressed | decompression MB/s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        chosen = " (chosen)" if row["variant"] == f"level {LEVEL}" else ""
        print(f"| {row['variant']}{chosen} | {row['bytes_per_event']:.1f} | {row['ratio']:.1f} | "
              f"{row['compress_mb_s']:,.0f} | {row['events_per_s']:,.0f} | {row['decompress_mb_s']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
