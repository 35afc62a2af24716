"""Segment framing (receiver.contract.framing) and the durable-file helpers (receiver.contract.files)."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.contract import framing
from receiver.contract.files import FileLock, fsync_directory, try_lock
from receiver.log import WRITER_LOCK_FILE, LogLockedError, SegmentWriter

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
records = st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k != "crc32"),
                          json_scalars | st.lists(json_scalars, max_size=3),
                          min_size=1, max_size=6)


@given(records)
def test_a_line_round_trips_and_every_way_of_framing_gives_the_same_bytes(record: dict[str, Any]) -> None:
    line = framing.encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 + orjson.dumps(record).count(b"\n")
    assert framing.check_line(line) == {"crc32": line[framing.CRC_DIGITS].decode(), **record}
    body = orjson.dumps(record)
    assert framing.frame_json(body) == line
    assert framing.unframe(line) == framing.unframe(line[:-1]) == body
    rest = body[1:]
    assert framing.line_head(rest) + rest + framing.NEWLINE == line
    assert framing.line_heads([rest, rest]) == [line[:framing.CRC_PREFIX_LEN]] * 2
    assert int(line[framing.CRC_DIGITS], 16) == zlib.crc32(b"{" + line[framing.CRC_PREFIX_LEN:-1])


def test_the_layout_constants_describe_the_documented_line() -> None:
    line = framing.encode_record({"v": 1, "seq": 42})
    assert line.startswith(framing.CRC_HEAD) and line[18:20] == framing.CRC_CLOSE
    assert framing.CRC_PREFIX_LEN == len(b'{"crc32":"00000000",') == 20
    assert slice(10, 18) == framing.CRC_DIGITS
    assert zlib.crc32(b"{") == framing.CRC_SEED


def test_an_empty_or_non_object_body_cannot_be_framed() -> None:
    for body in (b"{}", b"[1]", b"1", b"", b"{ }"):
        with pytest.raises(ValueError, match="at least one member"):
            framing.frame_json(body)
    with pytest.raises(ValueError, match="at least one member"):
        framing.encode_record({})


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(records, min_size=1, max_size=8), st.data())
def test_check_lines_judges_every_line_as_iter_lines_does(tmp_path: Path, lines: list[dict[str, Any]],
                                                          data: st.DataObject) -> None:
    raw = bytearray(b"".join(framing.encode_record(r) for r in lines))
    for _ in range(data.draw(st.integers(0, 3))):  # flip bytes, cut the tail, add blank lines
        what = data.draw(st.sampled_from(["flip", "cut", "blank"]))
        if what == "flip" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        elif what == "cut" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        else:
            raw[data.draw(st.integers(0, len(raw))):0] = b"\n"
    path = tmp_path / framing.segment_name(1)
    path.write_bytes(bytes(raw))
    slow = list(framing.iter_lines(path))
    good, bad = framing.check_lines(path, bytes(raw))
    assert good == [n for n, item in slow if not isinstance(item, framing.BadLine)]
    assert bad == [item for _, item in slow if isinstance(item, framing.BadLine)]


def test_segment_names_numbers_and_order(tmp_path: Path) -> None:
    assert framing.segment_name(1) == "segment-00000001.ndjson"
    assert framing.segment_number(tmp_path / "segment-00000042.ndjson") == 42
    for bad in (0, 10**8, -1):
        with pytest.raises(ValueError, match="segment number"):
            framing.segment_name(bad)
    with pytest.raises(ValueError, match="not a log segment name"):
        framing.segment_number("segment-1.ndjson")
    for n in (10, 2, 1):
        (tmp_path / framing.segment_name(n)).write_bytes(framing.encode_record({"seq": n}))
    (tmp_path / "segment-x.ndjson").write_bytes(b"")
    assert [framing.segment_number(p) for p in framing.segment_paths(tmp_path)] == [1, 2, 10]
    assert sorted(tmp_path.glob(framing.SEGMENT_GLOB)) != framing.segment_paths(tmp_path)  # the glob is wider
    assert framing.last_seq(tmp_path) == 10
    assert [r["seq"] for r in framing.iter_log(tmp_path)] == [1, 2, 10]


def test_the_writer_names_its_segments_and_lines_by_the_framing(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "log", max_segment_bytes=1)
    try:
        for n in range(3):
            writer.append({"n": n})
    finally:
        writer.close()
    paths = framing.segment_paths(tmp_path / "log")
    assert [p.name for p in paths] == [framing.segment_name(n) for n in (1, 2, 3)]
    assert [framing.check_lines(p, p.read_bytes()) for p in paths] == [([1], [])] * 3
    assert [r["seq"] for r in framing.iter_log(tmp_path / "log")] == [1, 2, 3]


# ---------------------------------------------------------------- files


def test_try_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    first = try_lock(path)
    assert isinstance(first, FileLock) and first.held
    assert try_lock(path) is None  # another open file description: refused at once
    first.release()
    first.release()  # a second release does nothing
    assert not first.held
    with try_lock(path) as again:
        assert again is not None and again.held
    assert not again.held
    assert try_lock(path) is not None


def test_try_lock_refuses_a_lock_another_process_holds(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert try_lock(path) is None
    finally:
        holder.communicate("", timeout=10)
    lock = try_lock(path)  # the holder exited: the kernel dropped its lock
    assert lock is not None
    lock.release()


def test_the_log_writer_takes_its_lock_with_try_lock(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    held = try_lock(log_dir / WRITER_LOCK_FILE)
    assert held is not None
    with pytest.raises(LogLockedError, match="another clickledger process"):
        SegmentWriter(log_dir)
    held.release()
    SegmentWriter(log_dir).close()


def test_fsync_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fsync_directory(tmp_path)
    assert len(synced) == 1
    with pytest.raises(FileNotFoundError):
        fsync_directory(tmp_path / "missing")
