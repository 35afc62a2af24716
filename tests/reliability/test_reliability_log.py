"""Reliability of the log itself: torn tails, flipped bytes, and injected write/fsync faults.

- A segment whose last record is cut at any offset (and maybe followed by garbage) still
  yields every complete record before it, reports the tail exactly once, and never
  blocks the next writer.
- A corrupted byte anywhere in a middle line (the checksum member included) is reported
  as a corrupt line while every other line still reads.
- With a write or fsync that fails, the app answers 503 `log_unavailable`, never a 2xx
  (nor any other answer whose record is not on disk), and recovers without a restart.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import tempfile
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from receiver.contract.framing import (
    BadLine,
    check_line,
    encode_record,
    iter_log,
    iter_segment,
    last_seq,
    segment_paths,
)
from receiver.log import LogWriteError, SegmentWriter
from tests.support.network import TEST_CONFIG

# ---------------------------------------------------------------- helpers

TEXT = st.text(max_size=40)  # any unicode but surrogates: newlines, U+2028, NUL included
RECORD = st.fixed_dictionaries({"kind": st.sampled_from(["click", "postback", "health"]), "text": TEXT,
                                "n": st.integers(-2**31, 2**31)})


def write_segment(log_dir: Path, records: list[dict[str, Any]]) -> Path:
    writer = SegmentWriter(log_dir)
    try:
        for record in records:
            writer.append(dict(record))
    finally:
        writer.close()
    paths = segment_paths(log_dir)
    assert len(paths) == 1
    return paths[0]


def payload(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("crc32", "seq")}


# ---------------------------------------------------------------- torn tails


@settings(max_examples=300, deadline=None)
@given(records=st.lists(RECORD, min_size=2, max_size=6), data=st.data())
def test_torn_last_record_is_reported_once_and_never_blocks_the_next_writer(
        records: list[dict[str, Any]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "log"
        segment = write_segment(log_dir, records)
        lines = segment.read_bytes().splitlines(keepends=True)
        assert len(lines) == len(records)
        head, last = b"".join(lines[:-1]), lines[-1]
        # cut the last record anywhere from its first byte to just before its newline
        cut = data.draw(st.integers(min_value=1, max_value=len(last) - 1), label="cut")
        garbage = data.draw(st.binary(max_size=48).map(lambda b: b.replace(b"\n", b"")), label="garbage")
        newline = data.draw(st.booleans(), label="newline")
        assume(not (newline and not garbage and cut == len(last) - 1))  # that is the intact record
        damaged = head + last[:cut] + garbage + (b"\n" if newline else b"")
        segment.write_bytes(damaged)

        bad: list[BadLine] = []
        got = list(iter_segment(segment, bad.append))
        assert [payload(r) for r in got] == records[:-1]
        assert [r["seq"] for r in got] == list(range(1, len(records)))
        assert len(bad) == 1, bad
        assert (bad[0].line_no, bad[0].offset) == (len(records), len(head))
        # unterminated: torn; terminated by a newline it is indistinguishable from corruption
        assert bad[0].torn is (not newline)

        # the next writer is not blocked: new segment, seq right after the last intact record
        assert last_seq(log_dir) == len(records) - 1
        writer = SegmentWriter(log_dir)
        try:
            seq = writer.append({"kind": "after", "text": "torn"})
        finally:
            writer.close()
        assert seq == len(records)
        paths = segment_paths(log_dir)
        assert len(paths) == 2 and paths[0].read_bytes() == damaged  # never rewritten
        bad.clear()
        everything = list(iter_log(log_dir, on_bad=bad.append))
        assert [payload(r) for r in everything] == records[:-1] + [{"kind": "after", "text": "torn"}]
        assert [r["seq"] for r in everything] == list(range(1, len(records) + 1))
        assert len(bad) == 1 and bad[0].segment == paths[0]


@settings(max_examples=300, deadline=None)
@given(records=st.lists(RECORD, min_size=3, max_size=6), data=st.data())
def test_a_flipped_byte_in_a_middle_line_is_reported_as_corrupt(
        records: list[dict[str, Any]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        segment = write_segment(Path(tmp) / "log", records)
        lines = segment.read_bytes().splitlines(keepends=True)
        victim = data.draw(st.integers(min_value=1, max_value=len(lines) - 2), label="line")
        line = bytearray(lines[victim])
        position = data.draw(st.integers(min_value=0, max_value=len(line) - 2), label="position")  # not the \n
        flip = data.draw(st.integers(min_value=1, max_value=255), label="xor")
        assume(line[position] ^ flip != ord("\n"))  # a new line break would make two lines of one
        line[position] ^= flip
        lines[victim] = bytes(line)
        segment.write_bytes(b"".join(lines))

        bad: list[BadLine] = []
        got = list(iter_segment(segment, bad.append))
        assert [payload(r) for r in got] == records[:victim] + records[victim + 1:]
        assert len(bad) == 1, f"byte {position} of line {victim + 1} xor {flip:#x} was not caught"
        assert (bad[0].line_no, bad[0].torn) == (victim + 1, False)


# The checksum member itself is part of the line: a corrupted digit must not pass for a
# valid one. int(x, 16) accepts upper case, surrounding whitespace, a sign and underscores,
# so each of these one-byte changes once left the checksum's value unchanged.
@pytest.mark.parametrize("mutate", [
    pytest.param(lambda digits: re.sub(rb"[a-f]", lambda m: m.group().upper(), digits, count=1),
                 id="upper-case"),
    pytest.param(lambda digits: b" " + digits[1:] if digits[:1] == b"0" else None, id="leading-space"),
    pytest.param(lambda digits: b"+" + digits[1:] if digits[:1] == b"0" else None, id="plus-sign"),
    pytest.param(lambda digits: b"0_" + digits[2:] if digits[:2] == b"00" else None, id="underscore"),
])
def test_a_corrupted_checksum_member_is_caught(mutate) -> None:
    checked = 0
    for n in range(4000):
        line = encode_record({"v": 1, "seq": n, "kind": "postback"})
        digits = line[10:18]
        changed = mutate(digits)
        if changed is None or changed == digits:
            continue
        assert int(changed, 16) == int(digits, 16)  # same value, different bytes
        damaged = line[:10] + changed + line[18:]
        assert check_line(damaged) is None, damaged[:30]
        checked += 1
        if checked >= 20:
            break
    assert checked > 0


# ---------------------------------------------------------------- injected write and fsync faults


class Faults:
    """What the next write/fsync does: pass through, or fail (the whole call, or after half of it)."""

    MODES = ("fsync", "write", "partial")

    def __init__(self, seed: int = 0) -> None:
        self.mode: str | None = None
        self.probability = 1.0  # with `mode`, each call fails with this probability
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected = 0
        self._half_written: set[int] = set()

    def _fails(self, mode: str) -> bool:
        with self.lock:
            if self.mode != mode or self.random.random() >= self.probability:
                return False
            self.injected += 1
            return True

    def fsync(self, fd: int) -> None:
        if self._fails("fsync"):
            raise OSError(errno.EIO, "injected fsync failure")
        os.fsync(fd)

    def write(self, fd: int, data: bytes) -> int:
        if self.mode == "partial" and len(data) > 1:
            if fd in self._half_written:  # the rest of a half-written batch: the disk is full now
                self._half_written.discard(fd)
                raise OSError(errno.ENOSPC, "injected: no space left on device")
            if self._fails("partial"):
                self._half_written.add(fd)
                return os.write(fd, bytes(data[: len(data) // 2]))
        if self._fails("write"):
            raise OSError(errno.ENOSPC, "injected: no space left on device")
        return os.write(fd, data)


@pytest.fixture
def faulty(make_harness, data_dir: Path):
    faults = Faults()
    writer = SegmentWriter(data_dir / "log", fsync=faults.fsync, write=faults.write)
    return make_harness(data_dir, writer=writer), faults


def every_line_is_intact(log_dir: Path) -> None:
    bad: list[BadLine] = []
    records = list(iter_log(log_dir, on_bad=bad.append))
    assert bad == [], "a failed write left bytes behind"
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs)), "seq must strictly increase in file order"


def requests_of_every_kind(cid: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, kwargs): one of each kind of answer the receiver gives when the log works."""
    nonce = uuid.uuid4().hex
    return [
        ("GET", "/healthz", {}),
        ("GET", "/postback", {"params": {"cid": cid, "txid": nonce, "payout": "2"}}),  # recorded
        ("GET", "/postback", {"params": {"cid": cid, "txid": nonce}}),  # duplicate
        ("GET", "/t/open-1", {"params": {"sub1": nonce}}),  # 302 click
        ("GET", "/t/alpha-paused-1", {}),  # 302 home
        ("POST", "/api/v1/earn/products/p1/click", {"headers": {"Authorization": "Bearer tok-1"}, "json": {}}),
        ("GET", "/postback", {"params": {"cid": "no-such-click"}}),  # 404
        ("GET", "/no/such/path", {"params": {"click_id": cid}}),  # 404 unrouted
        ("DELETE", "/healthz", {}),  # 405
    ]


@pytest.mark.parametrize("mode", Faults.MODES)
def test_a_failing_log_answers_503_never_2xx_and_recovers_without_restart(faulty, mode: str) -> None:
    h, faults = faulty
    cid = h.link_click("open-1")
    faults.mode = mode
    for method, path, kwargs in requests_of_every_kind(cid):
        resp = h.raw(method, path, **kwargs)
        assert (resp.status_code, resp.json) == (503, {"ok": False, "error": "log_unavailable"}), (
            f"{method} {path} answered {resp.status_code} while its record could not be written")
        assert "location" not in resp.headers
    assert faults.injected > 0
    assert h.log.new() == []  # nothing reached the disk, and nothing claims it did
    assert not h.receiver.writer.healthy
    every_line_is_intact(h.log.log_dir)

    faults.mode = None  # the fault clears: the same receiver answers and logs again
    statuses = []
    for method, path, kwargs in requests_of_every_kind(cid):
        ex = h.request(method, path, **kwargs)  # asserts exactly one record matching the answer
        statuses.append(ex.status)
    assert statuses == [200, 200, 200, 302, 302, 201, 404, 404, 405]
    assert h.receiver.writer.healthy
    every_line_is_intact(h.log.log_dir)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), probability=st.sampled_from([0.1, 0.3, 0.6]))
def test_random_faults_under_concurrency_never_acknowledge_an_unlogged_record(
        make_harness, tmp_path_factory, seed: int, probability: float) -> None:
    data = tmp_path_factory.mktemp("faults")
    (data / "config.toml").write_text(TEST_CONFIG, encoding="utf-8")
    faults = Faults(seed)
    h = make_harness(data, writer=SegmentWriter(data / "log", fsync=faults.fsync, write=faults.write))
    cid = h.link_click("open-1")
    faults.probability = probability
    rng = random.Random(seed)
    plan = [(uuid.uuid4().hex, rng.choice(Faults.MODES), rng.random()) for _ in range(120)]

    def send(item: tuple[str, str, float]) -> tuple[str, int, str | None]:
        nonce, mode, pick = item
        faults.mode = mode  # racy on purpose: concurrent requests see each other's faults
        if pick < 0.6:
            resp = h.raw("GET", "/postback", params={"cid": cid, "txid": nonce, "nonce": nonce})
        elif pick < 0.8:
            resp = h.raw("GET", "/t/open-1", params={"nonce": nonce})
        else:
            resp = h.raw("GET", "/postback", params={"cid": "unknown", "nonce": nonce})
        result = resp.json.get("result") if resp.status_code != 302 else "click"
        return nonce, resp.status_code, result

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, plan))
    faults.mode = None

    logged: dict[str, list[dict[str, Any]]] = {}
    for record in h.log.new():
        logged.setdefault(record["custom_data"].get("nonce") or record["fields"].get("transaction_id"),
                          []).append(record)
    unlogged_2xx = 0
    for nonce, status, result in answers:
        records = logged.get(nonce, [])
        if status == 503:
            # the first attempt failed; the retry of the 503 answer itself may have been written
            assert all(r["http_status"] == 503 and r["error"] == "log_unavailable" for r in records)
            assert len(records) <= 1
            continue
        if 200 <= status < 300 and not records:
            unlogged_2xx += 1
        assert len(records) == 1, (nonce, status, records)
        assert records[0]["http_status"] == status and records[0]["result"] == result
    assert unlogged_2xx == 0
    every_line_is_intact(h.log.log_dir)

    # recovery without restart; a postback answered 503 was never counted, so its retry records
    retried = [n for n, s, _ in answers if s == 503][:10]
    for nonce in retried:
        assert h.raw("GET", "/postback", params={"cid": cid, "txid": nonce}).json["result"] == "recorded"
    assert h.raw("GET", "/healthz").status_code == 200
    assert h.receiver.writer.healthy
    h.log.new()


def test_a_503_click_is_not_a_redirect(faulty) -> None:
    h, faults = faulty
    faults.mode = "fsync"
    resp = h.raw("GET", "/t/open-1")
    assert resp.status_code == 503 and "location" not in resp.headers
    faults.mode = None
    ok = h.get("/t/open-1")
    assert ok.status == 302
    location = ok.resp.headers["location"]
    assert location.startswith("https://open.example/go?")
    assert parse_qs(urlsplit(location).query)["click_id"] == [ok.fields["click_id"]]
    assert Counter(r["http_status"] for r in h.log.all()) == {302: 1}


def test_a_failed_close_at_rotation_never_blocks_the_log(tmp_path: Path, monkeypatch) -> None:
    """A close() error on a full segment (its records are already fsync'd) must not leave the
    writer holding a dead descriptor: every later append would fail, or hit a reused fd."""
    import receiver.log as log_module

    writer = SegmentWriter(tmp_path / "log", max_segment_bytes=200)
    real_close = os.close
    failed: list[int] = []

    def close(fd: int) -> None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        real_close(fd)
        if not failed and target.endswith("segment-00000001.ndjson"):  # the rotating segment:
            # closed, but reported as failed (as close() may do after an I/O error)
            failed.append(fd)
            raise OSError(errno.EIO, "injected close failure")

    try:
        writer.append({"pad": "x" * 300})  # fills the first segment
        monkeypatch.setattr(log_module.os, "close", close)
        seqs = []
        for i in range(3):
            try:
                seqs.append(writer.append({"i": i}))
            except LogWriteError as exc:
                seqs.append(str(exc))
    finally:
        monkeypatch.setattr(log_module.os, "close", real_close)
        with contextlib.suppress(OSError):
            writer.close()
    assert failed, "the injected close failure did not happen"
    assert seqs == [2, 3, 4]
    assert [r["seq"] for r in iter_log(tmp_path / "log")] == [1, 2, 3, 4]
    assert len(segment_paths(tmp_path / "log")) == 2
