"""Issue 13, staging's cost and memory: DuckDB parses the bytes already checked (a compressed
segment is decompressed once), under a memory limit, spilling under DATA/warehouse/tmp/."""

from __future__ import annotations

from pathlib import Path

from pipeline import duck, staging
from pipeline.runner import run
from receiver.compression import compress_segment
from receiver.contract import framing
from receiver.contract.datadir import DataDir
from tests.support.log_builder import traffic_log


def test_a_duckdb_of_the_pipeline_has_a_memory_limit_and_spills_under_the_given_directory(tmp_path: Path):
    con = duck.connect(tmp_path / "tmp", memory_limit="256MB")
    try:
        limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
        spill = con.execute("select current_setting('temp_directory')").fetchone()[0]
        zone = con.execute("select current_setting('TimeZone')").fetchone()[0]
    finally:
        con.close()
    assert limit.replace(" ", "").upper() in ("256.0MB", "244.1MIB", "256MB")
    assert Path(spill) == tmp_path / "tmp" and (tmp_path / "tmp").is_dir()
    assert zone == "UTC"


def test_staging_parses_what_it_checked_and_spills_under_the_warehouse(tmp_path: Path, monkeypatch):
    traffic_log(tmp_path, clicks=30, segments=3)
    for number in (1, 2):
        compress_segment(tmp_path / "log" / framing.segment_name(number))
    sources: list[Path] = []
    connections: list[dict] = []
    copy_rows, connect = staging._copy_rows_duckdb, duck.connect

    def recording_copy(source: Path, target: Path, tmp_dir: Path | None = None) -> None:
        sources.append(source)
        copy_rows(source, target, tmp_dir)

    def recording_connect(tmp_dir, **kwargs):
        connections.append({"tmp_dir": tmp_dir, **kwargs})
        return connect(tmp_dir, **kwargs)

    monkeypatch.setattr(staging, "_copy_rows_duckdb", recording_copy)
    monkeypatch.setattr(duck, "connect", recording_connect)
    run(tmp_path)
    assert len(sources) == 3
    # never the .zst again: DuckDB reads the lines the CRC check read, decompressed once
    assert not any(framing.is_compressed(s) for s in sources)
    tmp = DataDir(tmp_path).warehouse_tmp_dir
    staged = [c for c in connections if Path(c["tmp_dir"]).name.startswith("clickledger-stage-")]
    assert len(staged) == 3 and all(Path(c["tmp_dir"]).is_relative_to(tmp) for c in staged)
    assert all(c["memory_limit"] == duck.STAGING_MEMORY_LIMIT for c in staged)
    routing = [c for c in connections if c not in staged]  # the run's routing: limited, spilling under tmp/
    assert routing and all(c["memory_limit"] == duck.ROUTING_MEMORY_LIMIT and Path(c["tmp_dir"]) == tmp
                           for c in routing)
    assert list(tmp.iterdir()) == []  # scratch files go with the segment they were for
