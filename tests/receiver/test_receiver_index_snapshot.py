"""The compact click index and its snapshots (sidecars and base) against the dict index.

The dict index built by `rebuild_indexes` from every log record is the reference: with
or without snapshots, stale, corrupt, torn or missing ones, the receiver must know
exactly the same clicks with the same attributes, the same conversions and the same top
seq.
"""

from __future__ import annotations

import os
import shutil
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.contract.framing import encode_record, iter_log, segment_paths
from receiver.contract.timeutil import format_utc
from receiver.indexes import Click, ClickIndex, CompactClicks, rebuild_indexes
from receiver.log import SegmentWriter
from receiver.snapshot import (
    BASE_NAME,
    build_sidecar,
    index_dir_for,
    load_indexes,
    merge,
    read_index_file,
    scan_segment,
    sidecar_path,
    write_index_file,
)
from tests.support.ids import uuid_like

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def click_record(seq: int, click_id: str, *, source: str = "link", offer: str = "o1", partner: str = "p1",
                 affiliate: str | None = "aff1", user: str | None = None, product: str | None = None,
                 expires: datetime | None = None) -> dict[str, Any]:
    return {"v": 1, "seq": seq, "kind": "click", "result": "click", "fields": {
        "click_id": click_id, "source": source, "offer_id": offer, "partner_id": partner,
        "affiliate_id": affiliate, "user_id": user, "product_id": product,
        "expires_at": format_utc(expires) if expires else None, "redirect_url": "https://x.example/"}}


def postback_record(seq: int, click_id: str, txn: str, status: str, result: str = "recorded") -> dict[str, Any]:
    return {"v": 1, "seq": seq, "kind": "postback", "result": result,
            "fields": {"click_id": click_id, "transaction_id": txn, "status": status}}


def write_segments(log_dir: Path, segments: list[list[dict[str, Any] | bytes]]) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    for n, records in enumerate(segments, start=len(segment_paths(log_dir)) + 1):
        data = b"".join(r if isinstance(r, bytes) else encode_record(r) for r in records)
        (log_dir / f"segment-{n:08d}.ndjson").write_bytes(data)


def reference(log_dir: Path):
    return rebuild_indexes(iter_log(log_dir))


def assert_same(log_dir: Path, probe_ids: list[str], **kwargs: Any) -> None:
    """load_indexes answers exactly like the dict index for every probe id."""
    ref_clicks, ref_conv, ref_top = reference(log_dir)
    loaded = load_indexes(log_dir, **kwargs)
    assert loaded.top_seq == ref_top
    assert len(loaded.clicks) == len(ref_clicks)
    assert sorted(loaded.clicks) == sorted(ref_clicks)
    for click_id in list(ref_clicks) + probe_ids:
        assert loaded.clicks.get(click_id) == ref_clicks.get(click_id), click_id
    assert loaded.conversions._recorded == ref_conv._recorded


# ---------------------------------------------------------------- random logs

ids = st.one_of(
    st.builds(lambda n: str(uuid.UUID(int=n, version=4)), st.integers(0, 2**128 - 1)),
    st.builds(uuid_like, st.integers(1, 20)),  # repeats across segments: the later click must win
    st.sampled_from(["abc", "CLICK-1", "00000000-0000-4000-8000-00000000000A", "ä-id", " 1"]),
)
clicks_st = st.tuples(
    ids, st.sampled_from(["link", "earn"]), st.sampled_from(["o1", "o2"]), st.sampled_from(["p1", "p2"]),
    st.sampled_from([None, "aff1"]), st.sampled_from([None, "u1", "u2"]), st.sampled_from([None, "t1"]),
    st.one_of(st.none(), st.integers(-10**6, 10**11)),  # up to year ~5200: a datetime must hold it
)
events = st.one_of(
    clicks_st.map(lambda c: ("click", c)),
    st.tuples(ids, st.sampled_from(["T1", "T2"]), st.sampled_from(["approved", "pending"]),
              st.sampled_from(["recorded", "duplicate"])).map(lambda p: ("postback", p)),
    st.just(("bad", None)),
)


def materialise(segments: list[list[tuple[str, Any]]]) -> list[list[dict[str, Any] | bytes]]:
    seq = 0
    out: list[list[dict[str, Any] | bytes]] = []
    for events_of_segment in segments:
        records: list[dict[str, Any] | bytes] = []
        for kind, value in events_of_segment:
            seq += 1
            if kind == "click":
                cid, source, offer, partner, aff, user, product, expires_s = value
                expires = None if expires_s is None else T0 + timedelta(seconds=expires_s, microseconds=seq)
                records.append(click_record(seq, cid, source=source, offer=offer, partner=partner,
                                            affiliate=aff, user=user, product=product, expires=expires))
            elif kind == "postback":
                cid, txn, status, result = value
                records.append(postback_record(seq, cid, txn, status, result))
            else:  # a corrupt line: its checksum does not match
                records.append(b'{"crc32":"00000000","v":1,"seq":%d,"kind":"click"}\n' % seq)
        out.append(records)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(st.lists(events, max_size=12), min_size=1, max_size=5),
       extra=st.lists(st.lists(events, max_size=6), max_size=2), probes=st.lists(ids, max_size=5))
def test_lookups_equal_the_dict_index_on_random_logs(tmp_path_factory, segments, extra, probes) -> None:
    log_dir = tmp_path_factory.mktemp("log") / "log"
    write_segments(log_dir, materialise(segments))
    assert_same(log_dir, probes)  # first load: sidecars built from the segments, base written below
    loaded = load_indexes(log_dir)
    write_index_file(index_dir_for(log_dir) / BASE_NAME, loaded.data)
    assert_same(log_dir, probes)  # from the base
    write_segments(log_dir, materialise(extra))
    assert_same(log_dir, probes)  # base + sidecars of newer segments


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=st.lists(st.lists(events, max_size=12), min_size=2, max_size=5), data=st.data())
def test_merging_onto_a_base_equals_merging_at_once(tmp_path_factory, segments, data) -> None:
    """The splice of newer segments into a base's sorted arrays gives the very arrays, tables
    and lists that one merge of every segment gives (the path a start with a base takes)."""
    log_dir = tmp_path_factory.mktemp("log") / "log"
    write_segments(log_dir, materialise(segments))
    runs = [scan_segment(p) for p in segment_paths(log_dir)]
    split = data.draw(st.integers(1, len(runs)), label="segments in the base")
    assert merge(merge(None, runs[:split]), runs[split:]) == merge(None, runs)


# ---------------------------------------------------------------- stale, corrupt, torn, missing


def _log_with_sidecars(tmp_path: Path) -> tuple[Path, list[str]]:
    log_dir = tmp_path / "log"
    cids = [str(uuid.uuid4()) for _ in range(300)]
    write_segments(log_dir, [[click_record(i + 1, c, expires=T0) for i, c in enumerate(cids[:150])],
                             [click_record(i + 151, c) for i, c in enumerate(cids[150:])]])
    load_indexes(log_dir)  # writes the sidecars
    for segment in segment_paths(log_dir):
        assert read_index_file(sidecar_path(index_dir_for(log_dir), segment.name)) is not None
    return log_dir, cids


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "other_segment", "delete"])
def test_damaged_sidecars_are_ignored_and_rebuilt(tmp_path: Path, damage: str) -> None:
    log_dir, cids = _log_with_sidecars(tmp_path)
    index = index_dir_for(log_dir)
    first, second = (sidecar_path(index, p.name) for p in segment_paths(log_dir))
    data = first.read_bytes()
    if damage == "flip":
        first.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1:])
    elif damage == "truncate":  # torn: a crash while writing in place would look like this
        first.write_bytes(data[:len(data) - 7])
    elif damage == "empty":
        first.write_bytes(b"")
    elif damage == "garbage":
        first.write_bytes(os.urandom(len(data)))
    elif damage == "other_segment":  # valid file, but of another segment: the second's clicks must not
        shutil.copy(second, first)  # appear twice, nor the first's clicks go missing
    else:
        first.unlink()
    loaded = load_indexes(log_dir)
    assert loaded.built == 1
    assert all(loaded.clicks.get(c) is not None for c in cids)
    assert len(loaded.clicks) == 300
    assert_same(log_dir, [str(uuid.uuid4())])
    assert read_index_file(first).covers[0].name == segment_paths(log_dir)[0].name  # rebuilt


def test_a_segment_that_changed_after_its_sidecar_is_read_again(tmp_path: Path) -> None:
    log_dir, cids = _log_with_sidecars(tmp_path)
    segment = segment_paths(log_dir)[0]
    late = str(uuid.uuid4())
    with open(segment, "ab") as f:  # not something the receiver does: the sidecar must not hide it
        f.write(encode_record(click_record(999, late)))
    loaded = load_indexes(log_dir)
    assert loaded.built == 1 and loaded.clicks.get(late) is not None and loaded.top_seq == 999
    # and the same bytes rewritten in place (a torn tail cut off, say): the sample CRC sees it
    data = segment.read_bytes()
    segment.write_bytes(data[:-40] + b"x" * 40)
    loaded = load_indexes(log_dir)
    assert loaded.built == 1 and loaded.clicks.get(late) is None
    assert_same(log_dir, [late])


def test_a_stale_base_is_ignored(tmp_path: Path) -> None:
    log_dir, cids = _log_with_sidecars(tmp_path)
    write_index_file(index_dir_for(log_dir) / BASE_NAME, load_indexes(log_dir).data)
    assert load_indexes(log_dir).reused_base == 2
    first = segment_paths(log_dir)[0]
    first.unlink()  # the base covers a segment that is gone: its clicks must not stay known
    loaded = load_indexes(log_dir)
    assert loaded.reused_base == 0
    assert all(loaded.clicks.get(c) is None for c in cids[:150])
    assert all(loaded.clicks.get(c) is not None for c in cids[150:])


def test_a_crash_while_writing_a_sidecar_is_harmless(tmp_path: Path, monkeypatch) -> None:
    log_dir, cids = _log_with_sidecars(tmp_path)
    index = index_dir_for(log_dir)
    shutil.rmtree(index)

    def crash(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    loaded = load_indexes(log_dir)  # the writes fail: the indexes still come from the segments
    assert len(loaded.clicks) == 300
    assert not list(index.glob("*.idx")) and not list(index.glob("*.tmp*"))
    monkeypatch.undo()
    # a crash after the write but before the rename leaves only a temporary file: ignored
    (index / "segment-00000001.idx.tmp-1-1").write_bytes(b"CLIDX partial")
    assert_same(log_dir, [])


# ---------------------------------------------------------------- the receiver


def _postbacks(h, cids: list[str]) -> list[tuple[int, Any]]:
    answers = []
    for n, cid in enumerate(cids):
        for txn in ("T1", "T1", f"T{n}"):
            ex = h.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid, "transaction_id": txn})
            answers.append((ex.status, ex.json.get("result") or ex.json.get("error")))
    return answers


def test_restart_with_sidecars_answers_like_a_restart_without(make_harness, data_dir: Path, tmp_path: Path
                                                               ) -> None:
    h = make_harness(data_dir)
    cids = [h.link_click("alpha-1") for _ in range(5)] + [h.earn_click("p1") for _ in range(3)]
    h.get("/api/postback", params={"api_key": "key-alpha", "click_id": cids[0], "transaction_id": "T1"})
    top = h.log.all()[-1]["seq"]
    h.close()
    assert list(index_dir_for(data_dir / "log").glob("segment-*.idx"))  # clean shutdown wrote one
    without = tmp_path / "without"
    shutil.copytree(data_dir, without)
    shutil.rmtree(without / "index")
    probes = cids + [uuid_like(99), str(uuid.uuid4())]
    answers = []
    for data in (data_dir, without):
        again = make_harness(data)
        assert len(again.receiver.clicks) == len(cids)
        ex = again.get("/healthz")
        assert ex.record["seq"] == top + 1  # seq continues from the log's top
        answers.append(_postbacks(again, probes))
        again.close()
    assert answers[0] == answers[1]
    assert ("recorded" in {a for _, a in answers[0]}) and ("click_not_found" in {a for _, a in answers[0]})


def test_rotation_writes_the_sealed_segments_sidecar(make_harness, data_dir: Path) -> None:
    from receiver.app import Settings

    h = make_harness(data_dir, settings=Settings(data_dir, segment_bytes=2000))
    cids = [h.link_click("alpha-1") for _ in range(8)]
    h.close()
    segments = segment_paths(data_dir / "log")
    assert len(segments) > 2
    index = index_dir_for(data_dir / "log")
    assert all(read_index_file(sidecar_path(index, s.name)) is not None for s in segments)
    again = make_harness(data_dir)
    assert all(again.receiver.clicks.get(c) is not None for c in cids)


def test_a_serving_receiver_builds_big_sidecars_in_a_child_process(make_harness, data_dir: Path, monkeypatch,
                                                                   caplog) -> None:
    """Past CHILD_SIDECAR_BYTES the scan runs in `python -m receiver.snapshot`, off the server's
    GIL; its sidecar is the one build_sidecar writes in process."""
    import receiver.app
    from receiver.app import Settings

    monkeypatch.setattr(receiver.app, "CHILD_SIDECAR_BYTES", 1)
    h = make_harness(data_dir, settings=Settings(data_dir, segment_bytes=2000))
    cids = [h.link_click("alpha-1") for _ in range(6)]
    h.close()
    segments = segment_paths(data_dir / "log")
    index = index_dir_for(data_dir / "log")
    for segment in segments[:-1]:  # sealed by rotation: built by the child
        assert read_index_file(sidecar_path(index, segment.name)) == scan_segment(segment)
    again = make_harness(data_dir)
    assert all(again.receiver.clicks.get(c) is not None for c in cids)
    again.close()
    # a child that cannot build one says why; the receiver goes on (the next start scans it)
    not_a_segment = data_dir / "segment-99999999.ndjson"
    not_a_segment.mkdir()
    with caplog.at_level("WARNING"):
        receiver.app._build_sidecar_quietly(not_a_segment, index, True)
    assert "no index sidecar for segment-99999999.ndjson: the sidecar builder exited 1: " in caplog.text
    assert "IsADirectoryError" in caplog.text


def test_rotation_calls_on_sealed_with_the_sealed_segment(tmp_path: Path) -> None:
    sealed: list[Path] = []
    writer = SegmentWriter(tmp_path / "log", max_segment_bytes=100, on_sealed=sealed.append)
    for _ in range(3):
        writer.append({"v": 1, "pad": "x" * 120})
    writer.close()
    assert sealed == segment_paths(tmp_path / "log")[:2]


# ---------------------------------------------------------------- the index itself


def test_added_clicks_win_and_are_counted_once() -> None:
    cid = str(uuid.uuid4())
    old = Click(cid, "link", "o1", "p1", "aff1", None, None, None)
    log_dir_data = {"keys": bytes.fromhex(cid.replace("-", "")), "rows": bytes(8) + (2**63).to_bytes(8, "little")}
    compact = CompactClicks(log_dir_data["keys"], log_dir_data["rows"], [("link", "o1", "p1", "aff1", None)],
                            [None])
    index = ClickIndex(compact)
    assert index.get(cid) == old and len(index) == 1
    new = Click(cid, "earn", "o2", "p2", None, "u1", "t1", T0)
    index.add(new)
    assert index.get(cid) == new and len(index) == 1 and list(index) == [cid]
    index.add(Click("custom-id", "link", "o1", "p1", None, None, None, None))
    assert len(index) == 2 and sorted(index) == sorted([cid, "custom-id"])
    assert index.get(cid.upper()) == new  # issue 12: a UUID click id is looked up in any case


def test_memory_per_click_is_compact(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    n = 200_000
    expires = T0 + timedelta(days=30)
    with open(log_dir / "segment-00000001.ndjson", "wb") as f:
        f.writelines(encode_record(click_record(i + 1, str(uuid.uuid4()), user=f"u{i % 5000}", expires=expires))
                     for i in range(n))
    build_sidecar(log_dir / "segment-00000001.ndjson", index_dir_for(log_dir))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loaded = load_indexes(log_dir)
        clicks = loaded.clicks
        del loaded
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(clicks) == n
    assert held / n < 64, f"{held / n:.1f} bytes per click"


def test_a_segment_compressed_while_its_sidecar_is_scanned_still_gets_its_sidecar(
        make_harness, data_dir: Path, monkeypatch) -> None:
    """The compressor takes every sealed plain segment, so it can compress one whose sidecar a
    rotation's thread is still scanning: the scan is made again from the compressed form."""
    import receiver.app
    from receiver.app import _build_sidecar_quietly
    from receiver.compression import compress_segment

    h = make_harness(data_dir)
    h.link_click("alpha-1")
    h.close()
    (plain,) = segment_paths(data_dir / "log")
    index = index_dir_for(data_dir / "log")
    sidecar_path(index, plain.name).unlink()
    real = receiver.app.build_sidecar

    def compressed_meanwhile(segment: Path, index_dir: Path):
        if segment == plain:
            compress_segment(plain)  # what the compressor's thread does between two steps of the scan
        return real(segment, index_dir)

    monkeypatch.setattr(receiver.app, "build_sidecar", compressed_meanwhile)
    _build_sidecar_quietly(plain, index)
    assert not plain.exists()
    assert read_index_file(sidecar_path(index, plain.name)) is not None
