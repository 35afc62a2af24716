"""receiver.compression: sealed segments become one verified zstd frame each, in the background,
never the segment a writer has open (issue 13, target 6). The kill -9 loop is in
tests/reliability/test_reliability_compression.py; the readers in
tests/contract/test_contract_compressed_segments.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from receiver.app import Settings
from receiver.compression import (
    LEVEL,
    BackgroundCompressor,
    CompressionError,
    compress_sealed,
    compress_segment,
    main,
    temp_path,
)
from receiver.contract import framing
from receiver.log import SegmentWriter
from tests.support.log_builder import traffic_log
from tests.support.paths import REPO


def _wait_for_jobs(compressor: BackgroundCompressor, jobs: int) -> None:
    deadline = time.monotonic() + 60
    while compressor.jobs < jobs:
        assert time.monotonic() < deadline, "the compression job did not run"
        time.sleep(0.02)


def test_a_compressed_segment_is_one_frame_of_the_exact_bytes_with_the_plain_mtime(tmp_path: Path) -> None:
    traffic_log(tmp_path, clicks=40, segments=1)
    plain = framing.segment_paths(tmp_path / "log")[0]
    data, stat = plain.read_bytes(), plain.stat()
    steps: list[str] = []
    final = compress_segment(plain, pause=steps.append)
    assert steps == ["temp-written", "temp-synced", "verified", "renamed", "published", "plain-removed", "done"]
    assert final == framing.compressed_path(plain) and not plain.exists() and not temp_path(plain).exists()
    raw = final.read_bytes()
    params = zstandard.get_frame_parameters(raw)
    assert params.content_size == len(data) and params.has_checksum
    assert zstandard.ZstdDecompressor().decompress(raw, allow_extra_data=False) == data  # one frame, nothing after
    assert raw == zstandard.ZstdCompressor(level=LEVEL, write_checksum=True).compress(data)
    assert final.stat().st_mtime_ns == stat.st_mtime_ns
    assert len(raw) * 5 < len(data)


def test_the_segment_a_writer_has_open_is_never_compressed(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    writer = SegmentWriter(log_dir, max_segment_bytes=200)
    try:
        for n in range(6):
            writer.append({"n": n, "pad": "x" * 100})
        active = writer.segment_path
        assert active is not None
        with pytest.raises(CompressionError, match="is being written: only sealed segments are compressed"):
            compress_segment(active)
        job = compress_sealed(log_dir)
        assert active.exists() and framing.compressed_path(active) not in job.compressed
        assert [p.name for p in framing.segment_paths(log_dir)[:-1]] == [
            framing.segment_name(n) + ".zst" for n in range(1, len(job.compressed) + 1)]
        writer.append({"n": 6})  # the writer goes on in its plain segment
    finally:
        writer.close()
    assert [r["n"] for r in framing.iter_log(log_dir)] == list(range(7))
    compress_sealed(log_dir)  # closed: now it is sealed too
    assert all(framing.is_compressed(p) for p in framing.segment_paths(log_dir))


def test_the_receiver_compresses_what_it_seals_and_at_its_start_what_the_last_run_left(
        data_dir: Path, make_harness) -> None:
    settings = Settings(data_dir, segment_bytes=2000)
    h = make_harness(data_dir, settings=settings)
    clicks = [h.link_click("alpha-1") for _ in range(12)]  # a few rotations
    _wait_for_jobs(h.receiver.compressor, 2)
    segments = framing.segment_paths(data_dir / "log")
    assert len(segments) >= 3
    assert not framing.is_compressed(segments[-1])  # the one being written
    deadline = time.monotonic() + 60
    while not all(framing.is_compressed(p) for p in framing.segment_paths(data_dir / "log")[:-1]):
        assert time.monotonic() < deadline, "the sealed segments were not compressed"
        time.sleep(0.02)
    h.close()
    assert not framing.is_compressed(framing.segment_paths(data_dir / "log")[-1])  # the last run's: plain
    again = make_harness(data_dir, settings=settings)
    _wait_for_jobs(again.receiver.compressor, 1)
    assert all(framing.is_compressed(p) for p in framing.segment_paths(data_dir / "log"))
    assert all(again.receiver.clicks.get(c) is not None for c in clicks)
    again.close()
    records = list(framing.iter_log(data_dir / "log"))
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)) and len(records) == 12


def test_much_to_compress_is_compressed_in_a_child_process(tmp_path: Path) -> None:
    traffic_log(tmp_path, clicks=40, segments=2)
    log_dir = tmp_path / "log"
    expected = list(framing.iter_log(log_dir))
    compressor = BackgroundCompressor(log_dir, child_min_bytes=1)
    try:
        compressor.request()
        _wait_for_jobs(compressor, 1)
    finally:
        compressor.close()
    assert all(framing.is_compressed(p) for p in framing.segment_paths(log_dir))
    assert list(framing.iter_log(log_dir)) == expected


def test_the_job_command_says_what_it_did_and_refuses_bad_arguments(tmp_path: Path, capsys, monkeypatch) -> None:
    traffic_log(tmp_path, clicks=10, segments=2)
    done = subprocess.run([sys.executable, "-m", "receiver.compression", str(tmp_path / "log")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("compressed 2 segment(s): ")
    assert main([]) == 2 and "usage: python -m receiver.compression LOG_DIR [SEALED_SEGMENT ...]" in capsys.readouterr().err
    monkeypatch.setenv("CLICKLEDGER_COMPRESS_PAUSE_AT", "nowhere")
    assert main([str(tmp_path / "log")]) == 2
    assert "CLICKLEDGER_COMPRESS_PAUSE_AT must be one of temp-written, " in capsys.readouterr().err


def test_the_newest_segment_is_not_taken_for_sealed_while_a_writer_holds_the_log(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    writer = SegmentWriter(log_dir, max_segment_bytes=200)
    try:
        for n in range(4):
            writer.append({"n": n, "pad": "x" * 100})
        # the moment between a writer creating its next segment and taking its flock on it
        newest = log_dir / framing.segment_name(framing.segment_number(writer.segment_path) + 1)
        newest.write_bytes(b"")
        job = compress_sealed(log_dir)
        assert newest.exists() and writer.segment_path.exists()
        assert framing.compressed_path(newest) not in job.compressed
        assert [framing.is_compressed(p) for p in framing.segment_paths(log_dir)] == [True] * (len(job.compressed)) + [
            False, False]
        # a writer names the segments it knows are sealed (those it found at its start, those it rotated past)
        assert compress_sealed(log_dir, sealed=[writer.segment_path]).compressed == []  # (it has it open)
    finally:
        writer.close()
    newest.unlink()
    assert compress_sealed(log_dir).compressed  # no writer: the newest is sealed too
    assert all(framing.is_compressed(p) for p in framing.segment_paths(log_dir))
