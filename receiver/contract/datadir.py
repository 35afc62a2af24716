"""The data directory: the one place that knows where everything under DATA lives.

    DATA/
      config.toml            partners, offers, links, products, users, survey campaigns (people edit it)
      fx_rates.csv           date,currency,rate (people edit it)
      log/                   the append-only event log: segment-NNNNNNNN.ndjson, compressed to
                             segment-NNNNNNNN.ndjson.zst once sealed (the source of truth)
      index/                 the receiver's index snapshots (derived, safe to delete)
      warehouse/             the derived tables: <table>/click_day=YYYY-MM-DD/part.parquet (or
                             <table>.parquet for a small whole table), warehouse.duckdb; staging/
                             (a cache), by_click_day/ and routes/ (the run's per-history state),
                             tmp/ (DuckDB's spill)
      ledger/                wallet_credits.ndjson, the wallet's append-only ledger; deliveries.ndjson,
                             the forwarder's delivery log; points.ndjson, the publishers' points
      .clickledger-demo      present when `clickledger demo` made the directory

Everything derived (index/, warehouse/) can be rebuilt from log/ and ledger/.
"""

from __future__ import annotations

import os
from pathlib import Path

from receiver.contract.framing import SEGMENT_GLOB


class DataDir:
    """Every path under one data directory. A DataDir is os.PathLike, so it goes wherever a
    data directory's path does; it creates nothing (each writer makes what it writes)."""

    CONFIG_FILE = "config.toml"
    FX_RATES_FILE = "fx_rates.csv"
    LOG_DIR = "log"
    INDEX_DIR = "index"
    WAREHOUSE_DIR = "warehouse"
    STAGING_DIR = "staging"  # inside warehouse/
    WAREHOUSE_DB_FILE = "warehouse.duckdb"  # inside warehouse/
    WAREHOUSE_TMP_DIR = "tmp"  # inside warehouse/: DuckDB spills here, staging's scratch files
    BY_CLICK_DAY_DIR = "by_click_day"  # inside warehouse/: staged rows routed to their click's day
    ROUTES_DIR = "routes"  # inside warehouse/: click id -> the day its rows go to
    RUN_STATE_FILE = "run-state.json"  # inside warehouse/: what the last run derived from
    LEDGER_DIR = "ledger"
    LEDGER_FILE = "wallet_credits.ndjson"  # inside ledger/
    DELIVERIES_FILE = "deliveries.ndjson"  # inside ledger/: every delivery planned and attempted
    POINTS_FILE = "points.ndjson"  # inside ledger/: points credited to and taken back from publishers
    FORWARD_LOCK_FILE = ".forward.lock"  # inside ledger/: one forwarder per data directory
    DEMO_MARKER_FILE = ".clickledger-demo"
    # what `clickledger demo` deletes and makes again: everything but the files people edit
    GENERATED_DIRS = (LOG_DIR, INDEX_DIR, WAREHOUSE_DIR, LEDGER_DIR)

    __slots__ = ("root",)

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    def __repr__(self) -> str:
        return f"DataDir({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataDir) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # -- what people edit

    @property
    def config_path(self) -> Path:
        return self.root / self.CONFIG_FILE

    @property
    def fx_rates_path(self) -> Path:
        return self.root / self.FX_RATES_FILE

    # -- the log and what the receiver derives from it

    @property
    def log_dir(self) -> Path:
        return self.root / self.LOG_DIR

    @property
    def segment_pattern(self) -> str:
        """A glob of every log segment file, plain and compressed (for DuckDB's read_json and
        Polars' scan_ndjson by hand; code reads framing.segment_paths, see SEGMENT_GLOB)."""
        return str(self.log_dir / SEGMENT_GLOB)

    @property
    def index_dir(self) -> Path:
        return self.root / self.INDEX_DIR

    # -- what the pipeline derives

    @property
    def warehouse_dir(self) -> Path:
        return self.root / self.WAREHOUSE_DIR

    @property
    def staging_dir(self) -> Path:
        return self.warehouse_dir / self.STAGING_DIR

    @property
    def warehouse_tmp_dir(self) -> Path:
        return self.warehouse_dir / self.WAREHOUSE_TMP_DIR

    @property
    def by_click_day_dir(self) -> Path:
        return self.warehouse_dir / self.BY_CLICK_DAY_DIR

    @property
    def routes_dir(self) -> Path:
        return self.warehouse_dir / self.ROUTES_DIR

    @property
    def run_state_path(self) -> Path:
        return self.warehouse_dir / self.RUN_STATE_FILE

    @property
    def warehouse_db_path(self) -> Path:
        return self.warehouse_dir / self.WAREHOUSE_DB_FILE

    @property
    def ledger_dir(self) -> Path:
        return self.root / self.LEDGER_DIR

    @property
    def ledger_path(self) -> Path:
        return self.ledger_dir / self.LEDGER_FILE

    @property
    def deliveries_path(self) -> Path:
        return self.ledger_dir / self.DELIVERIES_FILE

    @property
    def points_path(self) -> Path:
        return self.ledger_dir / self.POINTS_FILE

    @property
    def forward_lock_path(self) -> Path:
        return self.ledger_dir / self.FORWARD_LOCK_FILE

    # -- the demo

    @property
    def demo_marker_path(self) -> Path:
        return self.root / self.DEMO_MARKER_FILE

    @property
    def generated_paths(self) -> tuple[Path, ...]:
        """The derived and logged directories, without the files people edit."""
        return tuple(self.root / name for name in self.GENERATED_DIRS)
