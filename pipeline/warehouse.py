"""The warehouse: DATA/warehouse/<table>.parquet, warehouse.duckdb, and the notebook API.

`load(data)` reads the tables written by `clickledger run` as Polars DataFrames;
`Warehouse.sql("select ...")` runs DuckDB SQL over them (each table is a view of
its Parquet file, so DuckDB reads it without copying). Polars and DuckDB exchange
data through Parquet files, which keeps exact Decimal and UTC timestamp types and
needs no pyarrow.

Parquet files are written deterministically (sorted rows, no run timestamps), so
the same log gives byte-identical files. warehouse.duckdb holds the same tables as
views over those Parquet files, by absolute path: one copy of the data, nothing to
rebuild but the catalogue (copying every table into DuckDB's own format took longer
than deriving the conversions). A moved DATA directory needs `clickledger run` again
to point them at the new place. The file is not byte-identical between runs
(DuckDB's file layout is not deterministic).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from pipeline.errors import WarehouseNotFoundError
from receiver.contract.config import DEFAULT_CURRENCY, ConfigError
from receiver.contract.config_file import load_config
from receiver.contract.datadir import DataDir

TABLES = ("clicks", "postbacks", "conversions", "earnings", "postback_issues", "wallet_credits",
          "wallet_balances", "fx_rates", "deliveries", "delivery_attempts")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class Warehouse:
    """Every table as a Polars DataFrame (`wh.conversions`, ...), plus `sql()` over them."""

    clicks: pl.DataFrame
    postbacks: pl.DataFrame
    conversions: pl.DataFrame
    earnings: pl.DataFrame
    postback_issues: pl.DataFrame
    wallet_credits: pl.DataFrame
    wallet_balances: pl.DataFrame
    fx_rates: pl.DataFrame
    deliveries: pl.DataFrame
    delivery_attempts: pl.DataFrame

    def __init__(self, tables: dict[str, pl.DataFrame], directory: Path | None = None):
        self.tables = dict(tables)
        self.directory = directory
        for name, frame in self.tables.items():
            setattr(self, name, frame)

    @property
    def base_currency(self) -> str:
        """The currency of the money columns: the conversions', else (no conversion yet) the data
        directory's config's `base_currency`, else the config's default."""
        conversions = self.tables.get("conversions")
        if conversions is not None and conversions.height and "base_currency" in conversions.columns:
            return str(conversions["base_currency"][0])
        if self.directory is not None:
            try:
                return load_config(DataDir(self.directory.parent).config_path).base_currency
            except ConfigError:
                pass
        return DEFAULT_CURRENCY

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={f.height}" for n, f in self.tables.items())
        return f"Warehouse({self.directory or 'in memory'}: {sizes})"

    def sql(self, query: str) -> pl.DataFrame:
        """Run DuckDB SQL over the tables (by name) and return the result as a Polars DataFrame."""
        import duckdb

        with tempfile.TemporaryDirectory(prefix="clickledger-sql-") as tmp:
            tmp_dir = Path(tmp)
            con = duckdb.connect()
            try:
                for name, frame in self.tables.items():
                    path = self.directory / f"{name}.parquet" if self.directory else None
                    if path is None or not path.exists():
                        path = tmp_dir / f"{name}.parquet"
                        frame.write_parquet(path)
                    con.execute(f"create view {name} as select * from read_parquet({_quote(path)})")
                out = tmp_dir / "result.parquet"
                con.execute(f"copy ({query.strip().rstrip(';')}) to {_quote(out)} (format parquet)")
            finally:
                con.close()
            return pl.read_parquet(out)


def write_tables(directory: Path, tables: dict[str, pl.DataFrame]) -> None:
    """Each table to <name>.parquet (atomic replace), then warehouse.duckdb's views of them."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        tmp = directory / f".{name}.parquet.tmp"
        # zstd level 1: as small as the default level here, in two thirds of the time
        frame.write_parquet(tmp, compression="zstd", compression_level=1, statistics=True)
        os.replace(tmp, directory / f"{name}.parquet")
    write_duckdb(directory, tables)


def write_duckdb(directory: Path, names: Iterable[str]) -> None:
    import duckdb

    tmp = directory / f".{DataDir.WAREHOUSE_DB_FILE}.tmp"
    wal = tmp.with_name(tmp.name + ".wal")
    tmp.unlink(missing_ok=True)
    wal.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for name in names:
            path = (directory / f"{name}.parquet").resolve()
            if path.exists():
                con.execute(f"create view {name} as select * from read_parquet({_quote(path)})")
    finally:
        con.close()
    wal.unlink(missing_ok=True)  # closed cleanly: everything is checkpointed into the file
    os.replace(tmp, directory / DataDir.WAREHOUSE_DB_FILE)


def load(data_dir: str | os.PathLike[str]) -> Warehouse:
    """The warehouse of DATA (written by `clickledger run`) as Polars DataFrames."""
    directory = DataDir(data_dir).warehouse_dir
    missing = [n for n in TABLES if not (directory / f"{n}.parquet").exists()]
    if missing:
        raise WarehouseNotFoundError(
            f"no warehouse tables in {directory} (missing {', '.join(missing)}): run "
            f"`clickledger run --data {data_dir}` first, or pipeline.run({str(data_dir)!r})")
    return Warehouse({n: pl.read_parquet(directory / f"{n}.parquet") for n in TABLES}, directory)
