"""DataDir: the one owner of every path under a data directory, and the parts that use it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.notebook_support import warehouse_or_hint
from pipeline.runner import run
from pipeline.story import log_requests
from receiver.app import Settings
from receiver.contract.datadir import DataDir
from receiver.contract.framing import segment_paths
from tests.support.traffic import FX_RATES, send_every_kind


def test_every_path_of_a_data_directory(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    root = tmp_path / "data"
    assert data.root == root and os.fspath(data) == str(root)
    assert data.config_path == root / "config.toml"
    assert data.fx_rates_path == root / "fx_rates.csv"
    assert data.log_dir == root / "log"
    assert data.segment_pattern == str(root / "log" / "segment-*.ndjson*")  # both forms (issue 13)
    assert data.index_dir == root / "index"
    assert data.warehouse_dir == root / "warehouse"
    assert data.staging_dir == root / "warehouse" / "staging"
    assert data.warehouse_db_path == root / "warehouse" / "warehouse.duckdb"
    assert data.ledger_dir == root / "ledger"
    assert data.ledger_path == root / "ledger" / "wallet_credits.ndjson"
    assert data.demo_marker_path == root / ".clickledger-demo"
    assert data.generated_paths == (root / "log", root / "index", root / "warehouse", root / "ledger")
    assert DataDir(str(root)) == data and hash(DataDir(root)) == hash(data)
    assert DataDir(data).root == root  # a DataDir is a path too
    assert not root.exists()  # it only names paths


def test_the_receiver_and_the_pipeline_put_everything_where_datadir_says(harness: Any) -> None:
    data = DataDir(harness.data_dir)
    settings = Settings(harness.data_dir)
    assert (settings.log_dir, settings.config_path) == (data.log_dir, data.config_path)
    assert harness.receiver.index_dir == data.index_dir
    send_every_kind(harness)
    harness.close()
    assert segment_paths(data.log_dir) and list(data.index_dir.glob("*.idx"))
    data.fx_rates_path.write_text(FX_RATES, encoding="utf-8")
    summary = run(data)
    assert summary.written and not summary.fx_file_missing
    assert data.warehouse_db_path.is_file() and list(data.staging_dir.glob("segment-*.parquet"))
    assert (data.warehouse_dir / "postbacks.parquet").is_file()
    wh, hint = warehouse_or_hint(data)
    assert wh is not None and hint is None and wh.directory == data.warehouse_dir
    assert log_requests(data, click_id=wh.clicks["click_id"][0]).height >= 1
