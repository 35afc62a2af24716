"""Issue 13: the warehouse by click day. A run re-derives only the days new segments touch, and
its tables equal a full run's (and the whole-log derivation's) row for row."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

import pipeline
from pipeline import partitions
from pipeline.warehouse import PARTITIONED, TABLES
from receiver.contract.datadir import DataDir
from receiver.contract.framing import encode_record
from tests.support.log_builder import LogBuilder, cid, make_data_dir

DAY0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def at(day: int, minute: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, minutes=minute)


def history() -> LogBuilder:
    """Clicks over five days, and postbacks for them days later: recorded, status updates (one a
    reversal of a credited earn conversion), conflicting duplicates, unknown and mistyped click ids,
    a conversion of a click the log lacks, requests to unknown paths with a click id."""
    b = LogBuilder(start=DAY0)
    minute = 0
    for day in range(5):
        for n in range(day * 10 + 1, day * 10 + 11):
            minute += 1
            if n % 5 == 0:
                b.click(cid(n), offer_id="taskwall-tasks", user_id="u1" if n % 2 else "u2", product_id="task-1",
                        ttl_hours=24 * 30, at=at(day, minute))
            else:
                b.click(cid(n), offer_id="acme-shop" if n % 3 else "peer-app", at=at(day, minute))
    for day in range(2, 8):  # postbacks arrive from day 2 on, for clicks of any earlier day
        for n in range(1, 51):
            if n % 3 != day % 3 or (day >= 5 and n % 2):
                continue
            minute += 1
            earn = n % 5 == 0
            kw = {"dialect": "earn"} if earn else {}
            if day < 5:
                b.postback(cid(n), transaction_id=f"T{n}", status="pending" if n % 2 else "completed" if earn
                           else "approved", amount="12.50", status_updates=True, at=at(day, minute), **kw)
            else:  # the later days: updates and duplicates of what was recorded before
                b.postback(cid(n), transaction_id=f"T{n}", status="approved" if not earn else "completed",
                           amount="12.50", result="duplicate", status_updates=True, at=at(day, minute), **kw)
                if n % 3 == 0:
                    b.postback(cid(n), transaction_id=f"T{n}", status="rejected", amount="99.00",
                               result="duplicate", status_updates=True, at=at(day, minute + 1), **kw)
        typo = cid(day)[:-1] + ("0" if cid(day)[-1] != "0" else "1")
        b.postback(typo, transaction_id=f"X{day}", status="approved", amount="1", error="click_not_found",
                   at=at(day, minute + 2))
        b.postback(cid(9000 + day), transaction_id=f"Y{day}", status="approved", amount="1",
                   error="click_not_found", at=at(day, minute + 3))
        b.unrouted("/api/postbak", cid(day * 3 + 1), at=at(day, minute + 4))
    b.postback(cid(7777), transaction_id="Z", status="approved", amount="3")  # its click is not in the log
    return b


def write_segments(data: Path, records: list[dict], first: int, count: int) -> None:
    log_dir = DataDir(data).log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    size = -(-len(records) // count)
    for i in range(count):
        chunk = records[i * size:(i + 1) * size]
        (log_dir / f"segment-{first + i:08d}.ndjson").write_bytes(b"".join(encode_record(r) for r in chunk))


def tables_of(data: Path) -> dict[str, pl.DataFrame]:
    wh = pipeline.load(data)
    return {name: wh.tables[name] for name in TABLES if name not in ("wallet_credits", "wallet_balances")}


def assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in a:
        key = [c for c in ("seq", "event_id", "date", "currency", "user_id") if c in a[name].columns]
        left, right = a[name].sort(key), b[name].sort(key)
        assert left.schema == right.schema, name
        assert left.equals(right), name


@pytest.fixture
def records() -> list[dict]:
    return history().records


def test_an_incremental_run_equals_a_full_run_and_the_whole_log(tmp_path: Path, records: list[dict]):
    cut = len(records) * 2 // 3
    inc = make_data_dir(tmp_path / "inc")
    write_segments(inc, records[:cut], 1, 3)
    first = pipeline.run(inc)
    days_before = {p.parent.name for p in partitions.partition_files(inc / "warehouse" / "conversions")}
    write_segments(inc, records[cut:], 4, 2)
    pipeline.run(inc)

    full = make_data_dir(tmp_path / "full")
    shutil.copytree(inc / "log", full / "log", dirs_exist_ok=True)
    summary = pipeline.run(full)
    assert_same(tables_of(inc), tables_of(full))
    # and both equal the whole log derived at once, in memory (the reference)
    whole, _ = pipeline.derive(full, use_cache=False)
    assert_same(tables_of(full), {n: whole[n] for n in tables_of(full)})
    assert summary.conversions == whole["conversions"].height and first.conversions < summary.conversions
    # the tables really are partitioned by click day, several of them
    days = {p.parent.name for p in partitions.partition_files(full / "warehouse" / "conversions")}
    assert len(days) >= 5 and days_before < days


def test_a_run_re_derives_only_the_days_new_segments_touch(tmp_path: Path, records: list[dict], monkeypatch):
    data = make_data_dir(tmp_path / "data")
    late = [r for r in records if r["received_at"] >= at(7).isoformat().replace("+00:00", "Z")]
    early = [r for r in records if r not in late]
    write_segments(data, early, 1, 2)
    pipeline.run(data)
    mtimes = {p: p.stat().st_mtime_ns for p in partitions.partition_files(data / "warehouse" / "conversions")}
    derived: list[str] = []
    real = partitions.day_rows
    monkeypatch.setattr(partitions, "day_rows", lambda d, day: derived.append(day.isoformat()) or real(d, day))

    pipeline.run(data)  # nothing new: no day derived again
    assert derived == []
    write_segments(data, late, 3, 1)
    pipeline.run(data)
    # the late postbacks' clicks are of these days (and the unknown ids' own day): only those
    clicked = {records[n]["received_at"][:10] for n in range(len(records))
               if records[n]["kind"] == "click" and records[n]["fields"]["click_id"] in
               {r["fields"].get("click_id") for r in late}}
    own = {r["received_at"][:10] for r in late if r["fields"].get("click_id") not in
           {c["fields"]["click_id"] for c in records if c["kind"] == "click"}}
    assert set(derived) == clicked | own and len(derived) < 8
    for path, mtime in mtimes.items():
        if path.parent.name.split("=")[1] not in derived:
            assert path.stat().st_mtime_ns == mtime, path  # untouched days are not rewritten


def test_a_changed_config_re_derives_every_day_and_new_fx_rates_the_days_they_move(tmp_path: Path,
                                                                                  records: list[dict], monkeypatch):
    data = make_data_dir(tmp_path / "data")
    write_segments(data, records, 1, 2)
    pipeline.run(data)
    derived: list[str] = []
    real = partitions.day_rows
    monkeypatch.setattr(partitions, "day_rows", lambda d, day: derived.append(day.isoformat()) or real(d, day))
    fx = DataDir(data).fx_rates_path
    fx.write_text(fx.read_text() + "2024-05-04,EUR,1.3\n")  # a new day's rate: moves conversions from that day on
    pipeline.run(data)
    conversions = pipeline.load(data).conversions
    moved = {r["click_id"] for r in conversions.filter(pl.col("converted_at").dt.date() >= datetime(2024, 5, 4).date())
             .iter_rows(named=True)}
    clicked = {r["received_at"][:10] for r in records if r["kind"] == "click" and r["fields"]["click_id"] in moved}
    assert set(derived) == clicked and 0 < len(derived) < len(partitions.partition_days(data / "warehouse"))
    whole, _ = pipeline.derive(data, use_cache=False)
    assert_same(tables_of(data), {n: whole[n] for n in tables_of(data)})

    derived.clear()
    config = DataDir(data).config_path
    config.write_text(config.read_text() + "\n# a comment is a change too\n")
    pipeline.run(data)
    assert len(derived) == len(partitions.partition_days(data / "warehouse"))


def test_the_warehouse_reads_as_hive_partitions_with_duckdb_and_polars(tmp_path: Path, records: list[dict]):
    data = make_data_dir(tmp_path / "data")
    write_segments(data, records, 1, 2)
    pipeline.run(data)
    wh = data / "warehouse"
    glob = str(wh / "conversions" / "*" / "*.parquet")
    by_day = duckdb.sql(f"select click_day, count(*) from read_parquet('{glob}', hive_partitioning = true) "
                        "group by all order by 1").fetchall()
    assert sum(n for _, n in by_day) == pipeline.load(data).conversions.height and len(by_day) >= 5
    lazy = pl.scan_parquet(wh / "conversions", hive_partitioning=True)
    assert lazy.select(pl.len()).collect().item() == pipeline.load(data).conversions.height
    assert "click_day" in lazy.collect_schema()
    con = duckdb.connect(str(wh / "warehouse.duckdb"), read_only=True)
    try:
        for name in TABLES:
            assert con.execute(f"select count(*) from {name}").fetchone()[0] == pipeline.load(data).tables[name].height
    finally:
        con.close()
    for name in PARTITIONED:
        assert not (wh / f"{name}.parquet").exists()


def test_a_refused_log_writes_no_partition(tmp_path: Path, records: list[dict]):
    data = make_data_dir(tmp_path / "data")
    write_segments(data, records, 1, 2)
    pipeline.run(data)
    before = {p: p.read_bytes() for p in partitions.partition_files(data / "warehouse" / "conversions")}
    bad = dict(records[5])
    bad["result"] = "duplicate"  # a duplicate answer for a pair never recorded
    bad["fields"] = {**bad["fields"], "transaction_id": "never", "status": "approved"}
    bad["kind"] = "postback"
    bad["seq"] = len(records) + 1
    write_segments(data, [bad], 3, 1)
    with pytest.raises(pipeline.PipelineConsistencyError):
        pipeline.run(data)
    assert {p: p.read_bytes() for p in partitions.partition_files(data / "warehouse" / "conversions")} == before
    assert list(DataDir(data).warehouse_tmp_dir.iterdir()) == []


def test_the_click_story_reads_only_the_segments_that_hold_the_click(tmp_path: Path, records: list[dict]):
    from pipeline.story import log_requests

    data = make_data_dir(tmp_path / "data")
    write_segments(data, records, 1, 6)
    pipeline.run(data)
    click = cid(3)  # clicked on day 0, its postbacks days later, its unknown-path request too
    holding = partitions.segments_holding(DataDir(data), click_id=click)
    assert holding is not None and 0 < len(holding) < 6
    narrowed = log_requests(data, click_id=click)
    by_transaction = log_requests(data, transaction_id="T3")
    DataDir(data).run_state_path.unlink()  # no run state: every segment is read
    assert partitions.segments_holding(DataDir(data), click_id=click) is None
    assert narrowed.equals(log_requests(data, click_id=click)) and narrowed.height >= 2
    assert by_transaction.equals(log_requests(data, transaction_id="T3")) and by_transaction.height >= 1


def test_load_reads_nothing_until_a_table_is_used_and_scan_never_holds_it(tmp_path: Path, records: list[dict]):
    data = make_data_dir(tmp_path / "data")
    write_segments(data, records, 1, 2)
    pipeline.run(data)
    wh = pipeline.load(data)
    assert "clicks" in wh.tables and "nothing" not in wh.tables
    assert wh.scan("clicks").select(pl.len()).collect().item() > 0
    assert wh.base_currency == "USD"
    assert all(wh.tables.loaded(name) is None for name in TABLES)  # asked, scanned, never read whole
    assert wh.clicks["seq"].is_sorted() and wh.tables.loaded("clicks") is not None  # read when used


def test_a_run_that_stops_half_way_leaves_tables_a_later_run_completes(tmp_path: Path, records: list[dict],
                                                                       monkeypatch):
    import pipeline.runner as runner

    cut = len(records) // 2
    data = make_data_dir(tmp_path / "data")
    write_segments(data, records[:cut], 1, 2)
    pipeline.run(data)
    write_segments(data, records[cut:], 3, 2)
    real, calls = runner.derive_log_tables, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the machine went down")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "derive_log_tables", failing)
    monkeypatch.setattr(runner, "DERIVE_BATCH_ROWS", 1)  # a batch per day: the second one fails
    monkeypatch.setattr(runner, "DERIVE_THREADS", 1)
    with pytest.raises(RuntimeError):
        pipeline.run(data)  # routed the new segments, derived one day, then stopped
    monkeypatch.undo()
    pipeline.run(data)
    full = make_data_dir(tmp_path / "full")
    shutil.copytree(data / "log", full / "log", dirs_exist_ok=True)
    pipeline.run(full)
    assert_same(tables_of(data), tables_of(full))
    assert list(DataDir(data).warehouse_tmp_dir.iterdir()) == []
