"""Sealed segments are compressed (segment-NNNNNNNN.ndjson.zst): every reader reads both forms
and gives the same records over any mix of plain and compressed segments (issue 13, target 6).

The readers: the framing's (iter_log, last_seq, iter_lines), the receiver's index rebuild
(load_indexes), the pipeline's staging and its tables, the support story (DuckDB's
read_json), and the `read_ndjson` of docs/log-format.md (DuckDB and Polars over the glob).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
import zstandard

from pipeline import staging
from pipeline.errors import CorruptLogError
from pipeline.runner import derive
from pipeline.staging import stage_log, stage_segment
from pipeline.story import log_requests
from receiver.compression import compress_segment
from receiver.contract import framing
from receiver.contract.datadir import DataDir
from receiver.snapshot import load_indexes, sidecar_path
from tests.support.log_builder import cid, traffic_log

CLICKS = 60


@pytest.fixture
def plain_and_mixed(tmp_path: Path) -> tuple[Path, Path]:
    """The same log twice: every segment plain, and segments 1 and 3 of 4 compressed."""
    plain = tmp_path / "plain"
    traffic_log(plain, clicks=CLICKS, segments=4)
    mixed = tmp_path / "mixed"
    shutil.copytree(plain, mixed)
    for number in (1, 3):
        compress_segment(mixed / "log" / framing.segment_name(number))
    assert [p.name for p in framing.segment_paths(mixed / "log")] == [
        "segment-00000001.ndjson.zst", "segment-00000002.ndjson", "segment-00000003.ndjson.zst",
        "segment-00000004.ndjson"]
    return plain, mixed


def _index_summary(log_dir: Path) -> tuple:
    loaded = load_indexes(log_dir)
    data = loaded.data
    return data.keys, data.rows, data.combos, data.users, data.others, data.conversions, data.bad_lines, loaded.top_seq


def test_the_framing_reads_both_forms_alike(plain_and_mixed: tuple[Path, Path]) -> None:
    plain, mixed = plain_and_mixed
    records = list(framing.iter_log(plain / "log"))
    assert list(framing.iter_log(mixed / "log")) == records
    assert framing.last_seq(mixed / "log") == framing.last_seq(plain / "log") == len(records)
    for path, compressed in zip(framing.segment_paths(plain / "log"), framing.segment_paths(mixed / "log"),
                                strict=True):
        assert framing.read_segment(compressed) == path.read_bytes()
        assert list(framing.iter_lines(compressed)) == list(framing.iter_lines(path))
        assert framing.segment_name_of(compressed) == path.name
        # what identifies a segment (the index snapshots, the staging cache) is the same in both forms
        mine, theirs = framing.segment_stat(path), framing.segment_stat(compressed)
        assert (mine.name, mine.size, mine.mtime_ns, mine.head_crc) == \
            (theirs.name, theirs.size, theirs.mtime_ns, theirs.head_crc)


def test_the_index_rebuild_reads_both_forms_alike(plain_and_mixed: tuple[Path, Path]) -> None:
    plain, mixed = plain_and_mixed
    assert _index_summary(mixed / "log") == _index_summary(plain / "log")
    assert load_indexes(mixed / "log").clicks.get(cid(1)) is not None  # in a compressed segment


def test_staging_and_the_tables_read_both_forms_alike(plain_and_mixed: tuple[Path, Path]) -> None:
    plain, mixed = plain_and_mixed
    staged_plain, staged_mixed = stage_log(plain / "log"), stage_log(mixed / "log")
    assert staged_mixed.events.equals(staged_plain.events)
    assert staged_mixed.events["segment"].unique().sort().to_list() == [  # rows name segments alike
        framing.segment_name(n) for n in (1, 2, 3, 4)]
    tables_plain, _ = derive(plain)
    tables_mixed, _ = derive(mixed)
    assert tables_plain.keys() == tables_mixed.keys()
    for name, frame in tables_plain.items():
        assert tables_mixed[name].equals(frame), name
    assert tables_plain["conversions"].height > 20


def test_the_support_story_reads_both_forms_alike(plain_and_mixed: tuple[Path, Path]) -> None:
    plain, mixed = plain_and_mixed
    for n in (1, 2, 28, 59):  # clicks of each segment
        story = log_requests(mixed, click_id=cid(n))
        assert story.height >= 1
        assert story.equals(log_requests(plain, click_id=cid(n)))


def test_the_docs_read_ndjson_reads_both_forms(plain_and_mixed: tuple[Path, Path]) -> None:
    plain, mixed = plain_and_mixed
    lines = sum(framing.read_segment(p).count(b"\n") for p in framing.segment_paths(plain / "log"))
    pattern = DataDir(mixed).segment_pattern  # docs/log-format.md: read_ndjson('DATA/log/segment-*.ndjson*')
    assert duckdb.sql(f"select count(*) from read_ndjson('{pattern}')").fetchall()[0][0] == lines
    assert pl.scan_ndjson([str(p) for p in framing.segment_paths(mixed / "log")]).select(pl.len()).collect().item() \
        == lines


def test_while_both_forms_exist_every_reader_reads_the_plain_one_once(plain_and_mixed: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    plain, mixed = plain_and_mixed
    # a compression that stopped after publishing the compressed form, before removing the plain one
    shutil.copy2(plain / "log" / framing.segment_name(3), mixed / "log" / framing.segment_name(3))
    assert framing.segment_paths(mixed / "log")[2].name == framing.segment_name(3)  # the plain form wins
    records = list(framing.iter_log(plain / "log"))
    assert list(framing.iter_log(mixed / "log")) == records
    assert _index_summary(mixed / "log") == _index_summary(plain / "log")
    assert stage_log(mixed / "log").events.equals(stage_log(plain / "log").events)
    assert log_requests(mixed, click_id=cid(40)).equals(log_requests(plain, click_id=cid(40)))


def test_a_plain_segment_compressed_after_it_was_listed_is_read_from_its_compressed_form(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    traffic_log(tmp_path, clicks=10, segments=2)
    listed = framing.segment_paths(tmp_path / "log")
    expected = [framing.read_segment(p) for p in listed]
    staged = [stage_segment(p, lambda bad: None) for p in listed]
    stats = [framing.segment_stat(p) for p in listed]
    for path in listed:
        compress_segment(path)
        assert not path.exists()
    assert [framing.read_segment(p) for p in listed] == expected  # the listing is stale: same bytes
    # DuckDB is handed the compressed file, not the record-by-record fallback
    monkeypatch.setattr(staging, "stage_segment_python", lambda *args: pytest.fail("the slow path ran"))
    for path, frame in zip(listed, staged, strict=True):
        assert stage_segment(path, lambda bad: None).equals(frame)
    assert [framing.segment_stat(p) for p in listed] != stats  # (the forms' own checks differ)
    assert [framing.segment_stat(p).size for p in listed] == [s.size for s in stats]


def test_compressing_keeps_the_index_snapshots_and_the_staging_cache(tmp_path: Path) -> None:
    traffic_log(tmp_path, clicks=CLICKS, segments=3)
    log_dir, cache = tmp_path / "log", tmp_path / "cache"
    first = load_indexes(log_dir)
    assert first.built == 3
    staged = stage_log(log_dir, cache_dir=cache)
    assert staged.cached == 0
    cached = sorted(p.name for p in cache.iterdir())
    for path in framing.segment_paths(log_dir):
        compress_segment(path)
    again = load_indexes(log_dir)
    assert again.built == 0 and again.sidecars == 3  # the sidecars built from the plain forms still match
    assert again.data.keys == first.data.keys and again.top_seq == first.top_seq
    restaged = stage_log(log_dir, cache_dir=cache)
    assert restaged.cached == 3  # not staged again: the same key in both forms
    assert sorted(p.name for p in cache.iterdir()) == cached
    assert restaged.events.equals(staged.events)


def test_a_compressed_segment_that_changed_is_not_taken_for_its_snapshot(tmp_path: Path) -> None:
    traffic_log(tmp_path, clicks=400, segments=2)
    log_dir = tmp_path / "log"
    for path in framing.segment_paths(log_dir):
        compress_segment(path)
    assert load_indexes(log_dir).built == 2
    first = framing.segment_paths(log_dir)[0]
    data = framing.read_segment(first)
    stat = first.stat()
    # rewritten with the same size, start and mtime, but another end: the frame checksum tells
    changed = data[:-60] + data[-60:].replace(b"custom", b"CUSTOM")
    assert changed != data and len(changed) == len(data) > 2 * framing.SAMPLE_BYTES
    first.write_bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(changed))
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_indexes(log_dir).built == 1
    assert sidecar_path(log_dir.parent / "index", first.name).name == "segment-00000001.idx"


def test_a_damaged_compressed_segment_gives_its_lines_before_the_damage_and_a_clear_error(tmp_path: Path) -> None:
    traffic_log(tmp_path, clicks=CLICKS, segments=1)
    log_dir = tmp_path / "log"
    plain = framing.segment_paths(log_dir)[0]
    data = plain.read_bytes()
    # several frames (as `zstd` may write), the last one cut short
    frames = [zstandard.ZstdCompressor(level=3).compress(data[i:i + 8192]) for i in range(0, len(data), 8192)]
    compressed = framing.compressed_path(plain)
    compressed.write_bytes(b"".join(frames)[:-20])
    plain.unlink()
    bad: list[framing.BadLine] = []
    records = list(framing.iter_log(log_dir, on_bad=bad.append))
    assert len(records) > 100 and [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert len(bad) == 1 and not bad[0].torn and b"damaged zstd frame" in bad[0].excerpt
    with pytest.raises(framing.DamagedSegmentError, match="segment-00000001.ndjson.zst cannot be decompressed"):
        framing.read_segment(compressed)
    with pytest.raises(CorruptLogError, match="segment-00000001.ndjson.zst line"):
        stage_log(log_dir)
    staged = stage_log(log_dir, skip_corrupt=True)
    assert staged.events["seq"].to_list() == [r["seq"] for r in records]
    assert load_indexes(log_dir).data.bad_lines == [[framing.segment_name(1), bad[0].line_no, False]]


def test_segment_names_of_both_forms(tmp_path: Path) -> None:
    assert framing.segment_number("segment-00000042.ndjson.zst") == 42
    assert framing.segment_name_of(tmp_path / "segment-00000042.ndjson.zst") == "segment-00000042.ndjson"
    assert framing.compressed_path(tmp_path / "segment-00000042.ndjson") == tmp_path / "segment-00000042.ndjson.zst"
    assert framing.plain_path(tmp_path / "segment-00000042.ndjson.zst") == tmp_path / "segment-00000042.ndjson"
    for name in ("segment-00000001.ndjson.zst.tmp", ".segment-00000001.ndjson.zst.tmp", "segment-1.ndjson.zst",
                 "segment-00000001.ndjson.gz"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ValueError, match="not a log segment name"):
            framing.segment_number(name)
    assert framing.segment_paths(tmp_path) == []
