"""The append-only log: line format, torn records, rotation, seq, concurrency, write faults,
and what the app answers when the log cannot be written."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.app import Settings, create_app
from receiver.contract.framing import (
    BadLine,
    check_line,
    encode_record,
    iter_log,
    last_seq,
    segment_paths,
)
from receiver.log import LogLockedError, LogWriteError, SegmentWriter
from tests.support.ids import uuid_like

# ---------------------------------------------------------------- line format


def test_encode_record_layout() -> None:
    line = encode_record({"v": 1, "seq": 7, "text": "ünï ✓", "nested": {"a": [1, 2.5, None, True]}})
    assert line.startswith(b'{"crc32":"') and line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line[18:20] == b'",'
    assert check_line(line) == {"crc32": line[10:18].decode(), "v": 1, "seq": 7, "text": "ünï ✓",
                                "nested": {"a": [1, 2.5, None, True]}}
    assert check_line(line.rstrip(b"\n")) is not None  # the checksum does not cover the newline


def test_empty_record_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_record({})


def test_check_line_refuses_damage() -> None:
    line = encode_record({"v": 1, "seq": 1, "path": "/api/postback"})
    assert check_line(line) is not None
    assert check_line(line.replace(b"postback", b"postbacc")) is None
    assert check_line(line[:-5] + b"\n") is None
    assert check_line(b'{"crc32":"zzzzzzzz",' + line[20:]) is None
    assert check_line(b'{"crc32":"00000000",' + line[20:]) is None
    assert check_line(b'{"crc32":"12345678"}\n') is None
    assert check_line(b"") is None
    assert check_line(b"\n") is None
    assert check_line(b'{"v":1,"seq":1}\n') is None  # no checksum at all
    assert check_line(b'{"crc32":"00000000","v"') is None


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k != "crc32"), JSONISH, min_size=1,
                       max_size=6),
       st.data())
def test_round_trip_and_any_byte_change_is_caught(record: dict[str, Any], data: st.DataObject) -> None:
    line = encode_record(record)
    decoded = check_line(line)
    assert decoded is not None
    decoded.pop("crc32")
    assert decoded == record
    # change one byte after the checksum member: CRC-32 catches every single-byte change
    position = data.draw(st.integers(min_value=18, max_value=len(line) - 2))
    delta = data.draw(st.integers(min_value=1, max_value=255))
    damaged = bytearray(line)
    damaged[position] = (damaged[position] + delta) % 256
    assert check_line(bytes(damaged)) is None


# ---------------------------------------------------------------- writing and reading


def write_records(log_dir: Path, n: int, **kwargs: Any) -> list[int]:
    writer = SegmentWriter(log_dir, **kwargs)
    try:
        return [writer.append({"v": 1, "seq": None, "n": i, "pad": "x" * 50}) for i in range(n)]
    finally:
        writer.close()


def test_append_assigns_seq_and_reads_back(tmp_path: Path) -> None:
    seqs = write_records(tmp_path / "log", 5)
    assert seqs == [1, 2, 3, 4, 5]
    records = list(iter_log(tmp_path / "log"))
    assert [r["seq"] for r in records] == seqs
    assert [r["n"] for r in records] == list(range(5))
    assert [p.name for p in segment_paths(tmp_path / "log")] == ["segment-00000001.ndjson"]


def test_every_start_opens_a_new_segment_and_seq_keeps_growing(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    assert write_records(log_dir, 3) == [1, 2, 3]
    assert write_records(log_dir, 2) == [4, 5]
    assert last_seq(log_dir) == 5
    assert write_records(log_dir, 1) == [6]
    assert [p.name for p in segment_paths(log_dir)] == [
        "segment-00000001.ndjson", "segment-00000002.ndjson", "segment-00000003.ndjson"]
    assert [r["seq"] for r in iter_log(log_dir)] == [1, 2, 3, 4, 5, 6]


def test_a_writer_that_writes_nothing_leaves_no_segment(tmp_path: Path) -> None:
    write_records(tmp_path / "log", 0)
    assert segment_paths(tmp_path / "log") == []
    assert last_seq(tmp_path / "log") == 0


def test_one_writer_per_log_directory(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "log")
    try:
        with pytest.raises(LogLockedError):
            SegmentWriter(tmp_path / "log")
    finally:
        writer.close()
    SegmentWriter(tmp_path / "log").close()  # released at close


def test_two_apps_cannot_share_a_data_dir(make_harness, data_dir: Path) -> None:
    make_harness(data_dir)
    with pytest.raises(LogLockedError):
        create_app(data_dir)


def test_closed_writer_refuses(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "log")
    writer.close()
    with pytest.raises(LogWriteError):
        writer.append({"v": 1})
    assert not writer.healthy


# ---------------------------------------------------------------- rotation


def test_segments_rotate_by_size(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    line_size = len(encode_record({"v": 1, "seq": 10, "n": 10, "pad": "x" * 50}))
    seqs = write_records(log_dir, 30, max_segment_bytes=4 * line_size)
    paths = segment_paths(log_dir)
    assert len(paths) >= 6
    for path in paths:
        assert path.stat().st_size <= 5 * line_size + 10  # rotation happens before the next batch
    assert [r["seq"] for r in iter_log(log_dir)] == seqs == list(range(1, 31))
    # the next start continues after the highest seq, in a new segment
    assert write_records(log_dir, 1, max_segment_bytes=4 * line_size) == [31]
    assert len(segment_paths(log_dir)) == len(paths) + 1


def test_app_rotates_segments(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir, settings=Settings(data_dir, segment_bytes=2000))
    for _ in range(12):
        h.link_click("alpha-1")
    assert len(segment_paths(h.log.log_dir)) >= 3
    assert [r["seq"] for r in h.log.all()] == list(range(1, 13))


# ---------------------------------------------------------------- torn and corrupt records


@pytest.mark.parametrize("cut", [1, 19, 20, 40, -2, -1])
def test_torn_last_record_is_skipped_and_the_next_start_is_not_blocked(tmp_path: Path, cut: int) -> None:
    log_dir = tmp_path / "log"
    write_records(log_dir, 4)
    segment = segment_paths(log_dir)[0]
    data = segment.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    last_len = len(data) - last_start
    keep = last_start + (cut if cut > 0 else last_len + cut)  # -1 drops only the newline
    segment.write_bytes(data[:keep])
    bad: list[BadLine] = []
    assert [r["n"] for r in iter_log(log_dir, on_bad=bad.append)] == [0, 1, 2]
    assert len(bad) == 1 and bad[0].torn and bad[0].line_no == 4 and bad[0].offset == last_start
    # a new writer starts: not blocked, appends to a NEW segment, torn line left as it was
    assert write_records(log_dir, 2) == [4, 5]  # seq 4 never became durable, so it is reused
    paths = segment_paths(log_dir)
    assert len(paths) == 2 and paths[0].read_bytes() == data[:keep]
    bad.clear()
    assert [(r["n"], r["seq"]) for r in iter_log(log_dir, on_bad=bad.append)] == [
        (0, 1), (1, 2), (2, 3), (0, 4), (1, 5)]
    assert len(bad) == 1 and bad[0].torn


def test_corrupt_middle_record_is_skipped(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_records(log_dir, 3)
    segment = segment_paths(log_dir)[0]
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"n":1', b'"n":7')
    segment.write_bytes(b"".join(lines))
    bad: list[BadLine] = []
    assert [r["n"] for r in iter_log(log_dir, on_bad=bad.append)] == [0, 2]
    assert len(bad) == 1 and not bad[0].torn and bad[0].line_no == 2


def test_app_starts_over_a_torn_log(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir)
    kept = h.link_click("alpha-1")
    lost = h.link_click("alpha-1")
    h.close()
    segment = segment_paths(data_dir / "log")[-1]
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 30])  # the second click's record is torn
    again = make_harness(data_dir)
    assert again.receiver.clicks.get(kept) is not None
    assert again.receiver.clicks.get(lost) is None
    assert again.get("/api/postback", params={"api_key": "key-alpha", "click_id": lost}).status == 404
    assert again.get("/api/postback", params={"api_key": "key-alpha", "click_id": kept}).status == 200
    assert len(segment_paths(data_dir / "log")) == 2


# ---------------------------------------------------------------- concurrency


def test_concurrent_appends(tmp_path: Path) -> None:
    threads, per_thread = 50, 20
    writer = SegmentWriter(tmp_path / "log")
    barrier = threading.Barrier(threads)

    def work(t: int) -> list[int]:
        barrier.wait()
        return [writer.append({"v": 1, "t": t, "i": i}) for i in range(per_thread)]

    try:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(work, range(threads)))
    finally:
        writer.close()
    all_seqs = [s for seqs in results for s in seqs]
    assert sorted(all_seqs) == list(range(1, threads * per_thread + 1))
    for seqs in results:
        assert seqs == sorted(seqs)
    records = list(iter_log(tmp_path / "log"))
    assert len(records) == threads * per_thread
    assert [r["seq"] for r in records] == list(range(1, threads * per_thread + 1))  # file order = seq order
    assert Counter((r["t"], r["i"]) for r in records) == Counter(
        {(t, i): 1 for t in range(threads) for i in range(per_thread)})


def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def fsync(fd: int) -> None:
        with lock:
            calls.append(fd)
        os.fsync(fd)

    writer = SegmentWriter(tmp_path / "log", fsync=fsync)
    try:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: writer.append({"i": i}), range(320)))
    finally:
        writer.close()
    assert len(list(iter_log(tmp_path / "log"))) == 320
    assert 1 <= len(calls) <= 320


def test_answers_come_after_fsync(make_harness, data_dir: Path) -> None:
    """2xx means fsync'd: when fsync returns, the record's bytes are already in the file."""
    synced: list[bytes] = []
    holder: list[SegmentWriter] = []

    def fsync(fd: int) -> None:
        os.fsync(fd)
        synced.append(holder[0].segment_path.read_bytes())  # what the disk holds at this fsync

    writer = SegmentWriter(data_dir / "log", fsync=fsync)
    holder.append(writer)
    h = make_harness(data_dir, writer=writer)
    cid = h.link_click("open-1")
    ex = h.get("/postback", params={"cid": cid, "txid": "T"})
    assert ex.json["result"] == "recorded"
    assert len(synced) == 2
    assert synced[-1].endswith(encode_record_of(h.log.all()[-1]))


def encode_record_of(record: dict[str, Any]) -> bytes:
    """The exact line of a record as read back (its crc32 member is the first)."""
    body = {k: v for k, v in record.items() if k != "crc32"}
    return encode_record(body)


# ---------------------------------------------------------------- write faults


class Faults:
    """An fsync/write pair that fail with EIO (or ENOSPC) while `on` is set."""

    def __init__(self) -> None:
        self.on = False
        self.partial = False

    def fsync(self, fd: int) -> None:
        if self.on:
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)

    def write(self, fd: int, data: Any) -> int:
        if self.on and self.partial:
            os.write(fd, bytes(data[: max(1, len(data) // 2)]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)


def test_fsync_failure_raises_and_the_writer_recovers(tmp_path: Path) -> None:
    faults = Faults()
    log_dir = tmp_path / "log"
    writer = SegmentWriter(log_dir, fsync=faults.fsync)
    try:
        assert writer.append({"n": 0}) == 1
        faults.on = True
        with pytest.raises(LogWriteError) as info:
            writer.append({"n": 1})
        assert info.value.errno == errno.EIO
        assert not writer.healthy
        faults.on = False
        assert writer.append({"n": 2}) == 3
        assert writer.healthy
    finally:
        writer.close()
    assert [r["n"] for r in iter_log(log_dir)] == [0, 2]  # the failed record was cut back
    assert len(segment_paths(log_dir)) == 2  # the failed segment is never written again


def test_partial_write_failure_leaves_no_torn_record(tmp_path: Path) -> None:
    faults = Faults()
    faults.partial = True
    log_dir = tmp_path / "log"
    writer = SegmentWriter(log_dir, write=faults.write)
    try:
        writer.append({"n": 0})
        faults.on = True
        with pytest.raises(LogWriteError) as info:
            writer.append({"n": 1, "pad": "y" * 100})
        assert info.value.errno == errno.ENOSPC
        faults.on = False
        writer.append({"n": 2})
    finally:
        writer.close()
    bad: list[BadLine] = []
    assert [r["n"] for r in iter_log(log_dir, on_bad=bad.append)] == [0, 2]
    assert bad == []


def test_failed_truncate_leaves_a_torn_tail_that_readers_skip(tmp_path: Path, monkeypatch) -> None:
    faults = Faults()
    faults.partial = True
    log_dir = tmp_path / "log"
    writer = SegmentWriter(log_dir, write=faults.write)
    try:
        writer.append({"n": 0})
        faults.on = True

        def no_truncate(fd: int, size: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "ftruncate", no_truncate)
        with pytest.raises(LogWriteError):
            writer.append({"n": 1, "pad": "y" * 100})
        monkeypatch.undo()
        faults.on = False
        writer.append({"n": 2})
    finally:
        writer.close()
    bad: list[BadLine] = []
    assert [r["n"] for r in iter_log(log_dir, on_bad=bad.append)] == [0, 2]
    assert len(bad) == 1 and bad[0].torn


def test_concurrent_appends_all_fail_together(tmp_path: Path) -> None:
    faults = Faults()
    faults.on = True
    writer = SegmentWriter(tmp_path / "log", fsync=faults.fsync)

    def attempt(i: int) -> str:
        try:
            writer.append({"i": i})
        except LogWriteError:
            return "failed"
        return "ok"

    try:
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(attempt, range(64)))
    finally:
        writer.close()
    assert outcomes == ["failed"] * 64
    assert list(iter_log(tmp_path / "log")) == []


# ---------------------------------------------------------------- the app when the log fails


@pytest.fixture
def faulty(make_harness, data_dir: Path):
    faults = Faults()
    writer = SegmentWriter(data_dir / "log", fsync=faults.fsync)
    h = make_harness(data_dir, writer=writer)
    return h, faults


def test_log_failure_answers_503_and_recovers_without_restart(faulty) -> None:
    h, faults = faulty
    cid = h.link_click("alpha-1")
    faults.on = True
    for method, path, kwargs in [
        ("GET", "/api/postback", {"params": {"api_key": "key-alpha", "click_id": cid}}),
        ("POST", "/api/postback", {"json": {"api_key": "key-alpha", "click_id": cid}}),
        ("GET", "/t/alpha-1", {}),
        ("POST", "/api/v1/earn/products/p1/click", {"headers": {"Authorization": "Bearer tok-1"}, "json": {}}),
        ("GET", f"/api/v1/earn/track/{cid}", {}),
        ("GET", "/healthz", {}),
        ("GET", "/api/postback", {"params": {"click_id": cid}}),  # a refusal cannot be logged either
        ("GET", "/nowhere", {}),
    ]:
        resp = h.raw(method, path, **kwargs)
        assert resp.status_code == 503, (method, path, resp.status_code)
        assert resp.json == {"ok": False, "error": "log_unavailable"}
        assert "location" not in resp.headers
    assert h.log.new() == []  # nothing was written, nothing claims success
    assert len(h.receiver.conversions) == 0
    faults.on = False
    health = h.get("/healthz")
    assert health.status == 200
    ok = h.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid})
    assert ok.json == {"ok": True, "result": "recorded"}
    assert h.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid}).json["result"] == "duplicate"


def test_failed_postback_is_not_counted(faulty) -> None:
    h, faults = faulty
    cid = h.link_click("open-1")
    faults.on = True
    assert h.raw("GET", "/postback", params={"cid": cid, "txid": "A"}).status_code == 503
    faults.on = False
    # the 503 did not claim the (click, transaction) pair: the retry is the first record
    assert h.get("/postback", params={"cid": cid, "txid": "A"}).json["result"] == "recorded"


def test_closed_log_answers_503(harness) -> None:
    harness.receiver.close()
    resp = harness.raw("GET", "/healthz")
    assert (resp.status_code, resp.json["error"]) == (503, "log_unavailable")


# ---------------------------------------------------------------- the same postback 50 times at once


def test_same_postback_concurrently_records_once(harness) -> None:
    cid = harness.link_click("open-1")
    barrier = threading.Barrier(50)

    def send(_: int) -> str:
        barrier.wait()
        resp = harness.raw("GET", "/postback", params={"cid": cid, "txid": "SAME", "payout": "3"})
        assert resp.status_code == 200
        return resp.json["result"]

    with ThreadPoolExecutor(50) as pool:
        results = Counter(pool.map(send, range(50)))
    assert results == {"recorded": 1, "duplicate": 49}
    records = [r for r in harness.log.new() if r["kind"] == "postback"]
    assert Counter(r["result"] for r in records) == {"recorded": 1, "duplicate": 49}
    recorded_seq = next(r["seq"] for r in records if r["result"] == "recorded")
    assert all(r["seq"] > recorded_seq for r in records if r["result"] == "duplicate")
    assert len(harness.receiver.conversions) == 1


@pytest.mark.server
def test_same_postback_concurrently_on_a_real_server(live_server) -> None:
    """50 copies at once against 8 threads: some may be shed with 503 `overloaded` (logged,
    Retry-After), and an advertiser retries those. In the end exactly one is recorded."""
    session = requests.Session()
    click = session.get(f"{live_server}/t/peer-aff3", allow_redirects=False)
    assert click.status_code == 302
    cid = parse_qs(urlsplit(click.headers["Location"]).query)["click_id"][0]
    before = len(live_server.records())
    barrier = threading.Barrier(50)
    sent = Counter()
    sent_lock = threading.Lock()

    def send(_: int) -> tuple[int, str]:
        barrier.wait()
        for _attempt in range(20):
            resp = requests.get(f"{live_server}/postback", params={"cid": cid, "txid": "RACE-1", "payout": "1"},
                                timeout=30)
            with sent_lock:
                sent[resp.status_code] += 1
            if resp.status_code != 503:
                return resp.status_code, resp.json()["result"]
            assert resp.json()["error"] == "overloaded" and resp.headers["Retry-After"] == "1"
            time.sleep(0.05)
        raise AssertionError("still shed after 20 attempts")

    with ThreadPoolExecutor(50) as pool:
        results = Counter(pool.map(send, range(50)))
    assert results == {(200, "recorded"): 1, (200, "duplicate"): 49}
    new = live_server.records()[before:]
    assert len(new) == sum(sent.values())  # every attempt is in the log, shed ones included
    assert Counter(r["http_status"] for r in new) == sent
    answered = [r for r in new if r["http_status"] == 200]
    assert Counter(r["result"] for r in answered) == {"recorded": 1, "duplicate": 49}
    assert all(r["error"] == "overloaded" for r in new if r["http_status"] == 503)
    assert len({r["seq"] for r in new}) == len(new)


def test_ids_in_records_are_predictable(harness) -> None:
    harness.link_click("alpha-1")
    record = harness.log.all()[-1]
    assert record["fields"]["click_id"] == uuid_like(1)
    assert record["event_id"] == uuid_like(1, "eeeeeeee")


def test_a_click_that_could_not_be_logged_does_not_exist(faulty) -> None:
    """A 503 click never reached the log, so no later postback may count against it
    (after a restart it would be unknown: the indexes must agree with the log)."""
    h, faults = faulty
    faults.on = True
    lost_link = h.click_ids.peek()
    assert h.raw("GET", "/t/open-1").status_code == 503
    lost_earn = h.click_ids.peek()
    assert h.raw("POST", "/api/v1/earn/products/p1/click", headers={"Authorization": "Bearer tok-1"}).status_code == 503
    faults.on = False
    for path, params in (("/postback", {"cid": lost_link}), ("/api/v1/earn/postback", {"click_id": lost_earn})):
        ex = h.get(path, params=params)
        assert (ex.status, ex.json) == (404, {**ex.json, "ok": False, "error": "click_not_found"}), (
            f"{path}: a click answered with 503 was kept in the click index: {ex.json}")


# ---------------------------------------------------------------- one write attempt per failed request


class CountingFailingSink:
    """A log sink (the writer's `write`) that fails every write with ENOSPC while `on`, and counts them."""

    def __init__(self) -> None:
        self.on = False
        self.failed_writes = 0

    def write(self, fd: int, data: Any) -> int:
        if self.on:
            self.failed_writes += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)


def test_a_failed_request_is_one_write_attempt_and_one_log_line(make_harness, data_dir: Path, caplog) -> None:
    """Issue 15 point 4: the resource's failed write is not attempted again by the middleware (which
    used to write the 503's own record too: two attempts and two "answering 503" lines per answer)."""
    sink = CountingFailingSink()
    h = make_harness(data_dir, writer=SegmentWriter(data_dir / "log", write=sink.write))
    cid = h.link_click("alpha-1")
    sink.on = True
    requests = [
        ("GET", "/api/postback", {"params": {"api_key": "key-alpha", "click_id": cid}}),  # the resource writes
        ("GET", "/postback", {"params": {"cid": cid, "txid": "T1"}}),
        ("GET", "/t/alpha-1", {}),
        ("GET", "/api/postback", {"params": {"click_id": "nope"}}),  # refused: the middleware writes
        ("DELETE", "/api/postback", {}),  # 405
        ("GET", "/nowhere", {}),  # unrouted
        ("GET", "/healthz", {}),
    ]
    for method, path, kwargs in requests:
        before = sink.failed_writes
        with caplog.at_level(logging.ERROR, logger="clickledger.receiver"):
            caplog.clear()
            resp = h.raw(method, path, **kwargs)
        assert resp.status_code == 503, (method, path)
        assert sink.failed_writes - before == 1, (method, path, sink.failed_writes - before)
        lines = [r for r in caplog.records if "answering 503" in r.getMessage()]
        assert len(lines) == 1, (method, path, [r.getMessage() for r in caplog.records])
    assert h.log.new() == []
    sink.on = False
    assert h.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid}).json["result"] == "recorded"
