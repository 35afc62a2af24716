"""The warehouse by click day: a run re-derives only the days that new log segments touch.

Every conversion belongs to a click, and postbacks arrive days after their click, rarely
months: the day of the click (UTC) is the partition key of every table built from the log's
clicks and postbacks (`PARTITIONED`). A table is a folder of Hive-style partitions,

    DATA/warehouse/conversions/click_day=2026-11-30/part.parquet

so DuckDB, Polars, Spark or Trino read it as it is, and warehouse.duckdb has a view over each.

Routing (DuckDB, out of core, under a memory limit): each staged row that a table reads (a
recorded click, a postback, a request to an unknown path) goes to the day of its click id's
*route*: the UTC day of the id's first click (by seq), or, for an id no click has, of the id's
first postback; a row without a click id goes to its own received day. So every row of a
click and of its (click_id, transaction_id) pairs lands in one day, and each day derives
with the pipeline's own builders (pipeline.events, conversions, earnings, issues) exactly
as the whole log would. The routed rows are kept per day and segment in
DATA/warehouse/by_click_day/ and the routes in DATA/warehouse/routes/: this per-history
state lives on disk, and a run holds one day's rows in memory at a time.

A run routes only the segments that are new or grew since the last run (run-state.json
names each with its staging cache key) and re-derives only the days their rows went to.
A change of config.toml, fx_rates.csv, the staging version or of this layout, or a segment
that disappeared or changed, re-derives everything. A run writes its partitions under
DATA/warehouse/tmp/ first and moves them into place only once every day derived and
checked, so a refused log writes nothing.

The nearest known click of a postback with an unknown click id is looked up among all the
clicks known when its day is derived (the search's candidates are found once per run, over
every click on disk: pipeline.nearest.index_for).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from pipeline import duck, schemas
from pipeline.staging import STAGED_SCHEMA, STAGING_VERSION
from receiver.contract.datadir import DataDir
from receiver.contract.params import UUID_PATTERN

PARTITION_KEY = "click_day"
from pipeline.warehouse import PARTITIONED  # noqa: E402  (one list of the partitioned tables)

# Earnings are sums per day of conversion (and partner, offer...): a click day's conversions add to
# several of them, so earnings are partitioned by their own `day` and re-summed, for the days the
# re-derived conversions fall on, from every conversion of those days.
EARNINGS, EARNINGS_KEY = "earnings", "day"
BY_CLICK_DAY = tuple(t for t in PARTITIONED if t != EARNINGS)

PART_FILE = "part.parquet"
# bump when routing or the partitions' layout changes: the next run re-derives all
LAYOUT_VERSION = 3  # 3: http_error rows routed (postback_issues lists them)
ROUTED_KINDS = ("click", "postback", "unrouted", "http_error")  # (the kinds postback_issues lists, and clicks)
# and every other row with a click id (the click story's index)


def partition_dir(table_dir: Path, day: date) -> Path:
    key = EARNINGS_KEY if table_dir.name == EARNINGS else PARTITION_KEY
    return table_dir / f"{key}={day.isoformat()}"


def partition_files(table_dir: Path) -> list[Path]:
    """Every partition file of one table, in day order."""
    return sorted(table_dir.glob(f"*=*/{PART_FILE}"))


def _day_of(directory: Path) -> date:
    return date.fromisoformat(directory.name.split("=", 1)[1])


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _files_sql(files: list[Path]) -> str:
    return "[" + ", ".join(_quote(p) for p in files) + "]"


# ---------------------------------------------------------------- what the last run derived from


@dataclass
class RunState:
    """DATA/warehouse/run-state.json: the inputs the warehouse's partitions were derived from."""

    inputs: str = ""  # digest of config.toml, fx_rates.csv, the staging version and this layout
    segments: dict[str, str] = field(default_factory=dict)  # segment name -> its staging cache key
    max_seq: int = 0
    credit_days: list[str] = field(default_factory=list)  # days derived since the last credit job ("*": all)
    ledger_size: int = -1  # the ledger's size after the last credit job (another size: look at every day)
    credit_skipped: list[dict] = field(default_factory=list)  # the last job's not-credited conversions

    @classmethod
    def read(cls, path: Path) -> RunState | None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(raw["inputs"], dict(raw["segments"]), int(raw["max_seq"]), list(raw["credit_days"]),
                       int(raw["ledger_size"]), list(raw["credit_skipped"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"inputs": self.inputs, "segments": self.segments, "max_seq": self.max_seq,
                                   "credit_days": sorted(set(self.credit_days)), "ledger_size": self.ledger_size,
                                   "credit_skipped": self.credit_skipped}, indent=1), encoding="utf-8")
        os.replace(tmp, path)


def inputs_digest(data: DataDir) -> str:
    """What, besides the log and the fx rates, every partition depends on: config.toml (profile
    statuses, offer terms, partner lines in details) and the versions of staging and this layout.
    (fx_rates.csv grows by a day's rates every day: `fx_changed_days` finds what a change touches.)"""
    digest = hashlib.sha256(f"staging {STAGING_VERSION} layout {LAYOUT_VERSION}\n".encode())
    path = data.config_path
    digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


def fx_changed_days(warehouse_dir: Path, old: pl.DataFrame, new: pl.DataFrame) -> set[date]:
    """The click days whose conversions a change of the fx rates can move: a conversion takes the
    rate of its currency on or before its day, so a rate added, changed or removed on day D moves
    only conversions of day D or later (whatever day their click was)."""
    changed = pl.concat([old.join(new, on=list(new.columns), how="anti"),
                         new.join(old, on=list(new.columns), how="anti")])
    if changed.is_empty():
        return set()
    since = changed["date"].min()
    files = partition_files(warehouse_dir / "conversions")
    if not files:
        return set()
    hits = (pl.scan_parquet(files, hive_partitioning=False, include_file_paths="_file")
            .filter(pl.col("converted_at").dt.date() >= since).select(pl.col("_file").unique()).collect())
    return {_day_of(Path(f).parent) for f in hits["_file"]}


# ---------------------------------------------------------------- routing


def _route_key(column: str) -> str:
    """The click id as the receiver keys it (pipeline.conversions.with_pair_keys): a UUID in any case is its
    lower-case form."""
    return (f"CASE WHEN regexp_full_match({column}, '{UUID_PATTERN}') THEN lower({column}) ELSE {column} END")


def routed_columns() -> list[str]:
    """The staged columns a day's derivation reads (those of the clicks, postbacks, issues and the
    consistency check), in staging's order."""
    from pipeline.conversions import CONSISTENCY_COLUMNS
    from pipeline.runner import CLICK_COLUMNS, issue_columns, postback_columns

    wanted = {*CLICK_COLUMNS, *postback_columns(), *issue_columns(), *CONSISTENCY_COLUMNS}
    return [c for c in STAGED_SCHEMA if c in wanted]


def route_segments(data: DataDir, sources: dict[str, Path], routes_part: Path) -> set[date]:
    """Route the staged rows of these segments ({segment name: its staged Parquet file}) into
    by_click_day/ (replacing any rows routed from them before), write the routes of click ids
    seen first here to `routes_part`, and return the days their rows went to."""
    rows_dir, routes_dir = data.by_click_day_dir, data.routes_dir
    touched: set[date] = set()
    for name in sources:  # a segment routed before (it grew, or a run stopped half way): its old rows go
        for old in rows_dir.glob(f"{PARTITION_KEY}=*/segment={name}"):
            touched.add(date.fromisoformat(old.parent.name.split("=", 1)[1]))
            shutil.rmtree(old)
    if not sources:
        return touched
    rows_dir.mkdir(parents=True, exist_ok=True)
    columns = ", ".join(f'"{c}"' for c in routed_columns())
    con = duck.connect(data.warehouse_tmp_dir, memory_limit=duck.ROUTING_MEMORY_LIMIT, threads=2, keep_order=False)
    try:
        con.execute(f"CREATE VIEW staged AS SELECT {columns}, {_route_key('click_id')} AS route_key, "
                    "CAST(received_at AS DATE) AS own_day FROM read_parquet("
                    f"{_files_sql(list(sources.values()))}, union_by_name = true) WHERE (kind IN "
                    f"{tuple(ROUTED_KINDS)} AND (kind <> 'click' OR result = 'click')) OR click_id IS NOT NULL")
        old_routes = sorted(routes_dir.glob("*.parquet"))
        con.execute("CREATE VIEW old_routes AS " + (
            f"SELECT route_key, click_day FROM read_parquet({_files_sql(old_routes)})" if old_routes
            else "SELECT NULL::VARCHAR AS route_key, NULL::DATE AS click_day WHERE false"))
        # a new id's day: its first click's, else its first postback's (a click ranks before any postback)
        con.execute("""
            CREATE TEMP TABLE new_routes AS
            SELECT route_key, arg_min(own_day, [CASE WHEN kind = 'click' AND result = 'click' THEN 0 ELSE 1 END, seq])
                AS click_day
            FROM staged WHERE route_key IS NOT NULL
              AND route_key NOT IN (SELECT route_key FROM old_routes WHERE route_key IS NOT NULL)
            GROUP BY route_key""")
        con.execute(f"COPY new_routes TO {_quote(routes_part)} (FORMAT parquet, COMPRESSION zstd)")
        con.execute(f"""
            COPY (SELECT s.* EXCLUDE (route_key, own_day), coalesce(o.click_day, n.click_day, s.own_day) AS {PARTITION_KEY}
                  FROM staged s LEFT JOIN old_routes o ON o.route_key = s.route_key
                  LEFT JOIN new_routes n ON n.route_key = s.route_key)
            TO {_quote(rows_dir)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({PARTITION_KEY}, segment),
                                   WRITE_PARTITION_COLUMNS true, OVERWRITE_OR_IGNORE true)""")
    finally:
        con.close()
    for name in sources:
        touched.update(date.fromisoformat(d.parent.name.split("=", 1)[1])
                       for d in rows_dir.glob(f"{PARTITION_KEY}=*/segment={name}"))
    return touched


def day_rows(data: DataDir, day: date) -> pl.DataFrame:
    """Every routed row of one click day, in seq order."""
    files = sorted(partition_dir(data.by_click_day_dir, day).glob("segment=*/*.parquet"))
    schema = {c: STAGED_SCHEMA[c] for c in routed_columns()}
    if not files:
        return pl.DataFrame(schema=schema)
    frame = pl.read_parquet(files, columns=list(schema), hive_partitioning=False)
    return frame.cast(schema).sort("seq", maintain_order=True)  # type: ignore[arg-type]


def day_batches(data: DataDir, days: list[date], rows: int) -> list[list[date]]:
    """These days in order, grouped so that each group holds about `rows` routed rows (from the
    Parquet files' metadata)."""
    batches: list[list[date]] = []
    size = rows
    for day in days:
        files = sorted(partition_dir(data.by_click_day_dir, day).glob("segment=*/*.parquet"))
        count = pl.scan_parquet(files, hive_partitioning=False).select(pl.len()).collect().item() if files else 0
        if not batches or size + count > rows:
            batches.append([])
            size = 0
        batches[-1].append(day)
        size += count
    return batches


def routed_days(data: DataDir) -> set[date]:
    return {date.fromisoformat(d.name.split("=", 1)[1]) for d in data.by_click_day_dir.glob(f"{PARTITION_KEY}=*")
            if any(d.iterdir())}


def click_ids_on_disk(data: DataDir) -> pl.Series:
    """Every click id of the routed rows (all days): the nearest-click search's haystack, read
    column-wise, once per run that has postbacks with unknown click ids to classify."""
    files = sorted(data.by_click_day_dir.glob(f"{PARTITION_KEY}=*/segment=*/*.parquet"))
    if not files:
        return pl.Series("click_id", [], dtype=pl.String)
    return (pl.scan_parquet(files, hive_partitioning=False)
            .filter((pl.col("kind") == "click") & (pl.col("result") == "click"))
            .select(pl.col("click_id").drop_nulls().unique()).collect()["click_id"])


def segments_holding(data: DataDir, *, click_id: str | None = None,
                     transaction_id: str | None = None) -> set[str] | None:
    """The names of the segments that may hold a record with this click id (or transaction id), from
    the routed rows (the day of the click id's route, then its rows' segments), plus every segment
    not routed yet; None when the warehouse has no run state (then every segment may)."""
    state = RunState.read(data.run_state_path)
    if state is None:
        return None
    from receiver.contract.framing import segment_paths

    names = {p.name.removesuffix(".zst") for p in segment_paths(data.log_dir)}
    found = names - set(state.segments)  # and the last, which may have grown since
    found |= {max(names)} if names else set()
    files = sorted(data.by_click_day_dir.glob(f"{PARTITION_KEY}=*/segment=*/*.parquet"))
    if click_id is not None:
        key = click_id.lower() if re.fullmatch(UUID_PATTERN, click_id) else click_id
        routes = sorted(data.routes_dir.glob("*.parquet"))
        days = (pl.scan_parquet(routes).filter(pl.col("route_key") == key).select("click_day").collect()
                .to_series().to_list()) if routes else []
        files = [f for day in days for f in partition_dir(data.by_click_day_dir, day).glob("segment=*/*.parquet")]
    column, value = ("click_id", click_id) if click_id is not None else ("transaction_id", transaction_id)
    if files:
        found |= set(pl.scan_parquet(files, hive_partitioning=False).filter(pl.col(column) == value)
                     .select(pl.col("segment").unique()).collect().to_series().to_list())
    return found


def unknown_click_ids_sent(data: DataDir, days: set[date]) -> list[str]:
    """The click ids of the refused click_not_found postbacks routed to these days."""
    files = [f for day in days for f in partition_dir(data.by_click_day_dir, day).glob("segment=*/*.parquet")]
    if not files:
        return []
    return (pl.scan_parquet(files, hive_partitioning=False)
            .filter((pl.col("kind") == "postback") & (pl.col("error") == "click_not_found"))
            .select(pl.col("click_id").drop_nulls().unique()).collect()["click_id"].to_list())


# ---------------------------------------------------------------- writing partitions


def write_partition(root: Path, table: str, day: date, frame: pl.DataFrame) -> None:
    """One table's partition of one day (validated by the caller), under `root`/<table>/."""
    target = partition_dir(root / table, day)
    target.mkdir(parents=True, exist_ok=True)
    # zstd level 1: as small as the default level here, in two thirds of the time
    frame.write_parquet(target / PART_FILE, compression="zstd", compression_level=1, statistics=True)


def commit_partitions(staged_root: Path, warehouse_dir: Path, days: set[date], gone: set[date]) -> None:
    """Move the partitions derived under `staged_root` into the warehouse (one rename each), and
    remove the partitions of days that no longer have rows."""
    for table in BY_CLICK_DAY:
        table_dir = warehouse_dir / table
        (warehouse_dir / f"{table}.parquet").unlink(missing_ok=True)  # the layout before partitions
        table_dir.mkdir(parents=True, exist_ok=True)
        for day in sorted(days | gone):
            final = partition_dir(table_dir, day)
            new = partition_dir(staged_root / table, day)
            if final.exists():
                old = final.with_name(f".{final.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                shutil.rmtree(old)
            if new.exists():
                os.replace(new, final)


def scan_table(warehouse_dir: Path, table: str) -> pl.LazyFrame:
    """One table of the warehouse, lazily: its partitions (in day order) or its single file."""
    schema = schemas.polars_schema(table)
    if table in PARTITIONED:
        files = partition_files(warehouse_dir / table)
        if not files:
            return pl.DataFrame(schema=schema).lazy()
        return pl.scan_parquet(files, hive_partitioning=False)
    return pl.scan_parquet(warehouse_dir / f"{table}.parquet")


@dataclass
class Affected:
    """What a run must re-derive."""

    full: bool
    days: set[date]
    gone: set[date]  # days whose rows all went (a segment replaced): their partitions are removed
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def plan_and_route(data: DataDir, keys: dict[str, str], sources: dict[str, Path], state: RunState | None,
                   inputs: str) -> tuple[Affected, Path]:
    """Decide what this run re-derives (all, or the days of new and grown segments), route those
    segments' rows ({segment name: staged Parquet file}; `keys` their cache keys), and return
    (what to re-derive, the new routes' file, to commit with the run)."""
    full = state is None or state.inputs != inputs or not set(state.segments) <= set(keys)
    tmp = data.warehouse_tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    routes_part = tmp / f"routes-{uuid.uuid4().hex[:12]}.parquet"
    if full:
        for directory in (data.by_click_day_dir, data.routes_dir):
            shutil.rmtree(directory, ignore_errors=True)
        todo = dict(sources)
        before: set[date] = set()
    else:
        assert state is not None
        todo = {n: p for n, p in sources.items() if state.segments.get(n) != keys[n]}
        before = routed_days(data)
    touched = route_segments(data, todo, routes_part)
    after = routed_days(data)
    if full:
        return Affected(True, after, partition_days(data.warehouse_dir) - after), routes_part
    return Affected(False, touched & after, (before | touched) - after), routes_part


def partition_days(warehouse_dir: Path) -> set[date]:
    """The days that have a partition in any of the partitioned tables."""
    return {_day_of(d) for table in BY_CLICK_DAY for d in (warehouse_dir / table).glob(f"{PARTITION_KEY}=*")
            if d.is_dir()}


def conversion_days(warehouse_dir: Path, click_days: set[date]) -> set[date]:
    """The days of conversion (earnings' days) of the conversions in these click days' partitions."""
    files = [partition_dir(warehouse_dir / "conversions", d) / PART_FILE for d in click_days]
    files = [f for f in files if f.exists()]
    if not files:
        return set()
    return set(pl.scan_parquet(files, hive_partitioning=False)
               .select(pl.col("converted_at").dt.date().unique()).collect().to_series().to_list())


EARNINGS_DAYS_AT_ONCE = 16  # conversions of this many days in memory at a time


def rebuild_earnings(warehouse_dir: Path, days: set[date],
                     build: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    """Sum the earnings of these days again, from every conversion of each day (whatever its click
    day), a few days at a time; a day without conversions now loses its partition."""
    table_dir = warehouse_dir / EARNINGS
    table_dir.mkdir(parents=True, exist_ok=True)
    (warehouse_dir / f"{EARNINGS}.parquet").unlink(missing_ok=True)  # the layout before partitions
    files = partition_files(warehouse_dir / "conversions")
    ordered = sorted(days)
    for start in range(0, len(ordered), EARNINGS_DAYS_AT_ONCE):
        batch = ordered[start:start + EARNINGS_DAYS_AT_ONCE]
        conversions = (pl.scan_parquet(files, hive_partitioning=False)
                       .filter(pl.col("converted_at").dt.date().is_in(batch)).collect() if files
                       else pl.DataFrame(schema=schemas.polars_schema("conversions")))
        earnings = schemas.validate(EARNINGS, build(conversions))
        for day in batch:
            frame = earnings.filter(pl.col(EARNINGS_KEY) == day)
            final = partition_dir(table_dir, day)
            if frame.is_empty():
                shutil.rmtree(final, ignore_errors=True)
                continue
            final.mkdir(parents=True, exist_ok=True)
            tmp = final / f".{PART_FILE}.tmp"
            frame.write_parquet(tmp, compression="zstd", compression_level=1, statistics=True)
            os.replace(tmp, final / PART_FILE)
