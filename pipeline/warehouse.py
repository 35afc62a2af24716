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
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import polars as pl

from pipeline.errors import WarehouseNotFoundError
from receiver.contract.config import DEFAULT_CURRENCY, ConfigError
from receiver.contract.config_file import load_config
from receiver.contract.datadir import DataDir

# Built from the log's clicks and postbacks, one Hive-style partition per click day
# (pipeline.partitions); the others are small and whole, one <table>.parquet each.
PARTITIONED = ("clicks", "postbacks", "conversions", "earnings", "postback_issues")
TABLES = ("clicks", "postbacks", "conversions", "earnings", "postback_issues", "wallet_credits",
          "wallet_balances", "fx_rates", "deliveries", "delivery_attempts")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class _Tables(Mapping[str, pl.DataFrame]):
    """Table name -> DataFrame, each read from the warehouse only when first asked for (and kept)."""

    def __init__(self, frames: dict[str, pl.DataFrame], directory: Path | None, names: tuple[str, ...]):
        self._frames = dict(frames)
        self._directory = directory
        self._names = tuple(dict.fromkeys([*frames, *names]))

    def __getitem__(self, name: str) -> pl.DataFrame:
        if name not in self._frames:
            if self._directory is None or name not in self._names:
                raise KeyError(name)
            frame = scan_table(self._directory, name).collect()
            # partitions are in day order: the rows in the table's own order, as one file would hold them
            if name == "earnings":
                from pipeline.earnings import GROUP

                frame = frame.sort(GROUP, nulls_last=True, maintain_order=True)
            elif name in PARTITIONED:
                frame = frame.sort("seq", maintain_order=True)
            self._frames[name] = frame
        return self._frames[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __contains__(self, name: object) -> bool:  # Mapping's would read the table to answer
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def loaded(self, name: str) -> pl.DataFrame | None:
        return self._frames.get(name)


class Warehouse:
    """Every table as a Polars DataFrame (`wh.conversions`, ...), plus `sql()` over them.

    A warehouse from `load()` reads a table only when it is first used (`wh.conversions`),
    and `wh.scan(name)` gives it lazily (a notebook reads a page or an aggregate of a
    10M-row table without holding it); `sql()` runs DuckDB over the Parquet files as they are.
    """

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

    def __init__(self, tables: dict[str, pl.DataFrame] | None = None, directory: Path | None = None, *,
                 names: tuple[str, ...] = ()):
        self.tables = _Tables(tables or {}, directory, names)
        self.directory = directory

    def __getattr__(self, name: str) -> pl.DataFrame:
        if name.startswith("_") or name in ("tables", "directory"):
            raise AttributeError(name)
        try:
            return self.tables[name]
        except KeyError:
            raise AttributeError(f"the warehouse has no table {name!r}") from None

    def scan(self, name: str) -> pl.LazyFrame:
        """One table, lazily (read from its Parquet files when collected)."""
        loaded = self.tables.loaded(name)
        if loaded is not None:
            return loaded.lazy()
        if self.directory is None or name not in self.tables:
            raise KeyError(f"the warehouse has no table {name!r}")
        return scan_table(self.directory, name)

    @property
    def base_currency(self) -> str:
        """The currency of the money columns: the conversions', else (no conversion yet) the data
        directory's config's `base_currency`, else the config's default."""
        if "conversions" in self.tables:
            conversions = self.scan("conversions")
            if "base_currency" in conversions.collect_schema():
                first = conversions.select("base_currency").head(1).collect()
                if first.height:
                    return str(first["base_currency"][0])
        if self.directory is not None:
            try:
                return load_config(DataDir(self.directory.parent).config_path).base_currency
            except ConfigError:
                pass
        return DEFAULT_CURRENCY

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={self.scan(n).select(pl.len()).collect().item()}" for n in self.tables)
        return f"Warehouse({self.directory or 'in memory'}: {sizes})"

    def sql(self, query: str) -> pl.DataFrame:
        """Run DuckDB SQL over the tables (by name) and return the result as a Polars DataFrame."""
        import duckdb

        with tempfile.TemporaryDirectory(prefix="clickledger-sql-") as tmp:
            tmp_dir = Path(tmp)
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                for name in self.tables:
                    loaded = self.tables.loaded(name)
                    source = None if loaded is not None or self.directory is None else \
                        _parquet_source(self.directory, name)
                    if source is None:
                        path = tmp_dir / f"{name}.parquet"
                        self.tables[name].write_parquet(path)
                        source = f"read_parquet({_quote(path)})"
                    con.execute(f"create view {name} as select * from {source}")
                out = tmp_dir / "result.parquet"
                con.execute(f"copy ({query.strip().rstrip(';')}) to {_quote(out)} (format parquet)")
            finally:
                con.close()
            return pl.read_parquet(out)


def scan_table(directory: Path, name: str) -> pl.LazyFrame:
    """One table of the warehouse in `directory`, lazily: its partitions in day order, or its file."""
    from pipeline.partitions import scan_table as scan

    return scan(directory, name)


def _parquet_source(directory: Path, name: str) -> str | None:
    """DuckDB's read_parquet(...) of one table's files (every partition, without the partition
    column, so a view has the table's own columns), or None when it has no files yet."""
    from pipeline.partitions import partition_files

    if name in PARTITIONED:
        files = partition_files(directory / name)
        if not files:
            return None
        glob = (directory / name).resolve() / "*" / files[0].name
        return f"read_parquet({_quote(glob)}, hive_partitioning = false)"
    path = (directory / f"{name}.parquet").resolve()
    return f"read_parquet({_quote(path)})" if path.exists() else None


def write_tables(directory: Path, tables: dict[str, pl.DataFrame]) -> None:
    """Each whole (unpartitioned) table to <name>.parquet (atomic replace), then warehouse.duckdb's
    views of every table. The partitioned tables are written by the run, day by day."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if name in PARTITIONED:
            raise ValueError(f"{name} is written by partition (pipeline.partitions), not as one file")
        tmp = directory / f".{name}.parquet.tmp"
        # zstd level 1: as small as the default level here, in two thirds of the time
        frame.write_parquet(tmp, compression="zstd", compression_level=1, statistics=True)
        os.replace(tmp, directory / f"{name}.parquet")
    write_duckdb(directory, TABLES)


def write_duckdb(directory: Path, names: Iterable[str]) -> None:
    """warehouse.duckdb: a view per table over its Parquet files (a partitioned table's by glob,
    so partitions written later are seen without rewriting it)."""
    import duckdb

    tmp = directory / f".{DataDir.WAREHOUSE_DB_FILE}.tmp"
    wal = tmp.with_name(tmp.name + ".wal")
    tmp.unlink(missing_ok=True)
    wal.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for name in names:
            source = _parquet_source(directory, name)
            if source is None and name in PARTITIONED:  # no partition yet: an empty view of its columns
                empty = directory / name / "_empty.parquet"  # not a partition: Hive readers skip _files
                empty.parent.mkdir(parents=True, exist_ok=True)
                from pipeline import schemas

                pl.DataFrame(schema=schemas.polars_schema(name)).write_parquet(empty)
                source = f"read_parquet({_quote(empty.resolve())})"
            if source is not None:
                con.execute(f"create view {name} as select * from {source}")
    finally:
        con.close()
    wal.unlink(missing_ok=True)  # closed cleanly: everything is checkpointed into the file
    os.replace(tmp, directory / DataDir.WAREHOUSE_DB_FILE)


def load(data_dir: str | os.PathLike[str]) -> Warehouse:
    """The warehouse of DATA (written by `clickledger run`); each table is read when first used."""
    directory = DataDir(data_dir).warehouse_dir
    missing = [n for n in TABLES if not (directory / (n if n in PARTITIONED else f"{n}.parquet")).exists()]
    if missing:
        raise WarehouseNotFoundError(
            f"no warehouse tables in {directory} (missing {', '.join(missing)}): run "
            f"`clickledger run --data {data_dir}` first, or pipeline.run({str(data_dir)!r})")
    return Warehouse({}, directory, names=TABLES)
