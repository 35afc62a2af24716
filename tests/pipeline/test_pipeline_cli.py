"""End to end: the real receiver writes the log, `clickledger run | credit | reconcile` read it."""

from __future__ import annotations

import hashlib
import itertools
import logging
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import falcon.testing
import polars as pl
import pytest

import pipeline
from clickledger.cli import main
from pipeline.errors import CorruptLogError, WarehouseNotFoundError
from receiver.app import create_app
from tests.support.log_builder import FX_CSV, LogBuilder, cid, make_data_dir
from tests.support.paths import REPO

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


def drive_receiver(data: Path) -> dict[str, str]:
    """A handful of requests of every dialect through the real app; returns the click ids it made."""
    make_data_dir(data)
    # distinct-looking (but deterministic) UUID v4 click ids, so a typo is near exactly one of them
    ids = (str(uuid.UUID(bytes=hashlib.md5(b"click%d" % n).digest(), version=4)) for n in itertools.count(1))
    events = (f"00000000-0000-4000-9000-{n:012d}" for n in itertools.count(1))
    app = create_app(data, clock=Clock(), new_click_id=lambda: next(ids), new_event_id=lambda: next(events))
    client = falcon.testing.TestClient(app)
    clicks = {}
    try:
        for slug in ("acme-aff1", "moustache-aff1", "peer-aff3", "cw-aff2"):
            location = client.simulate_get(f"/t/{slug}").headers["location"]
            clicks[slug] = location.split("click_id=")[1].split("&")[0]
        earn = client.simulate_post("/api/v1/earn/products/task-1/click", json={},
                                    headers={"Authorization": "Bearer user-token-1"})
        clicks["earn"] = earn.json["clickId"]
        # seed 003: network, api_key, status final at first insert
        client.simulate_get("/api/postback", params={"api_key": "sp_live_acme", "click_id": clicks["acme-aff1"],
                                                     "status": "pending", "amount": "99", "commission": "10"})
        client.simulate_get("/api/postback", params={"api_key": "sp_live_acme", "click_id": clicks["acme-aff1"],
                                                     "status": "confirmed", "amount": "99", "commission": "10"})
        # seed 001: key in the path, payout, status updates allowed
        client.simulate_get("/postback/mlk_live_7f3a9c", params={"click_id": clicks["moustache-aff1"],
                                                                 "status": "pending", "payout": "2.00"})
        client.simulate_post("/postback/mlk_live_7f3a9c", params={"click_id": clicks["moustache-aff1"],
                                                                  "status": "approved", "payout": "2.00"})
        # seed 002: cid, payout, txid, eventN / paramN into custom_data; currency from the offer (EUR)
        client.simulate_get("/postback", params={"cid": clicks["peer-aff3"], "payout": "10", "txid": "T-1",
                                                 "event1": "install", "param2": "x"})
        # seed 004: campaign_id checked against the click's offer
        client.simulate_get("/postback/advertiser", params={"click_id": clicks["cw-aff2"], "campaign_id": "cw-1001",
                                                            "payout": "4", "currency": "GBP"})
        client.simulate_get("/postback/advertiser", params={"click_id": clicks["cw-aff2"], "campaign_id": "cw-9"})
        # seed 000: earn postback, JSON body, transactionId
        client.simulate_post("/api/v1/earn/postback", params={"click_id": clicks["earn"]},
                             json={"amount": 50.0, "status": "completed", "transactionId": "test_123"})
        # mistakes support will be asked about
        client.simulate_get("/api/postback", params={"api_key": "sp_live_acme", "click_id": "{click_id}"})
        client.simulate_get("/postback", params={"cid": clicks["peer-aff3"][:-1] + "f", "payout": "1"})
        client.simulate_get("/postback/mlk_live_7f3a9c", params={"click_id": clicks["acme-aff1"]})
        client.simulate_get("/postbak", params={"click_id": clicks["acme-aff1"]})
    finally:
        app.receiver.close()
    return clicks


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e") / "data"
    clicks = drive_receiver(data)
    return data, clicks


def test_the_receivers_log_gives_the_expected_tables(demo, capsys):
    data, clicks = demo
    assert main(["run", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "clickledger run: 17 events read from 1 segment(s)" in out
    assert "conversions  5 (counted 4, pending 1, rejected 0)" in out
    wh = pipeline.load(data)
    got = {r["dialect"]: r for r in wh.conversions.iter_rows(named=True)}
    assert (got["network"]["status"], got["network"]["duplicates"], got["network"]["affiliate_payout"]) == (
        "pending", 1, D("10"))
    assert (got["publisher"]["status_history"], got["publisher"]["affiliate_payout_base"]) == (
        ["pending", "approved"], D("1.5"))
    assert (got["peerclick"]["transaction_id"], got["peerclick"]["currency"], got["peerclick"]["amount_base"]) == (
        "T-1", "EUR", D("12"))
    assert (got["advertiser"]["currency"], got["advertiser"]["amount_base"]) == ("GBP", D("5"))
    assert (got["earn"]["transaction_id"], got["earn"]["user_id"], got["earn"]["affiliate_payout_base"]) == (
        "test_123", "u1", D("25"))
    peer = wh.postbacks.filter(pl.col("transaction_id") == "T-1").row(0, named=True)
    assert peer["custom_data"] == '{"event1":"install","param2":"x"}'
    issues = dict(wh.postback_issues.select("reason", "nearest_click_id").rows())
    assert issues == {"status_is_final": None, "campaign_mismatch": None, "unsubstituted_macro": None,
                      "unknown_click_id": clicks["peer-aff3"], "key_of_another_partner": None, "wrong_path": None}
    # the receiver's answers and the tables agree
    answered = wh.postbacks.filter(pl.col("result") == "recorded").height
    assert answered == wh.conversions.height == 5
    assert wh.sql("select count(*) as n from conversions where counts")["n"].to_list() == [4]


def test_warehouse_duckdb_holds_every_table(demo, tmp_path, monkeypatch):
    """Another tool opening warehouse.duckdb (read-only, from any working directory) sees
    every table with the Parquet file's rows."""
    import duckdb

    data, _ = demo
    assert main(["run", "--data", str(data)]) == 0
    monkeypatch.chdir(tmp_path)  # the views must not depend on the working directory
    wh = pipeline.load(data)
    con = duckdb.connect(str(data / "warehouse" / "warehouse.duckdb"), read_only=True)
    try:
        names = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        assert names == set(pipeline.warehouse.TABLES)
        for name in pipeline.warehouse.TABLES:
            out = tmp_path / f"{name}.parquet"
            con.execute(f"copy (select * from {name}) to '{out}' (format parquet)")
            assert pl.read_parquet(out).equals(wh.tables[name]), name
    finally:
        con.close()


def test_credit_and_reconcile_commands(demo, capsys, tmp_path):
    data, clicks = demo
    assert main(["credit", "--data", str(data)]) == 0
    assert "credits      1 (25.00 USD)" in capsys.readouterr().out
    assert main(["credit", "--data", str(data)]) == 0
    assert "nothing new to credit" in capsys.readouterr().out
    statement = tmp_path / "peer.csv"
    statement.write_text(f"Click,Order,Status,Payout,Cur\n{clicks['peer-aff3']},T-1,approved,=1+2,EUR\n", encoding="utf-8")
    out = tmp_path / "rec.csv"
    args = ["reconcile", "--partner", "peerclick", "--statement", str(statement), "--data", str(data),
            "--out", str(out), "--column", "click_id=Click", "--column", "transaction_id=Order", "--column", "status=Status",
            "--column", "amount=Payout", "--column", "currency=Cur"]
    assert main(args) == 2  # "=1+2" is not an amount
    assert "amount='=1+2'" in capsys.readouterr().err
    statement.write_text(f"Click,Order,Status,Payout,Cur\n{clicks['peer-aff3']},T-1,approved,10,EUR\n", encoding="utf-8")
    assert main(args) == 0
    assert "matched" in capsys.readouterr().out
    assert pl.read_csv(out)["outcome"].to_list() == ["matched"]


def test_errors_exit_non_zero_with_a_message(tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path / "nowhere")]) == 2
    assert "config.toml: file not found" in capsys.readouterr().err
    with pytest.raises(WarehouseNotFoundError, match="clickledger run --data"):
        pipeline.load(tmp_path / "nowhere")


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.parquet"))}


def mixed_log() -> LogBuilder:
    b = LogBuilder()
    for i in range(1, 13):
        b.click(cid(i), offer_id=["acme-shop", "peer-app", "moustache-survey"][i % 3], affiliate_id="aff1")
        b.postback(cid(i), amount=f"{i}.5", status=["pending", None, "rejected"][i % 2],
                   dialect="peerclick" if i % 3 == 1 else "network")
        b.postback(cid(i), status="approved", result="duplicate")
    b.postback("[click_id]", error="click_not_found")
    return b


def test_rerun_gives_byte_identical_tables_and_incremental_equals_full(tmp_path):
    full = make_data_dir(tmp_path / "full")
    mixed_log().write(full, segments=3)
    pipeline.run(full)
    first = file_hashes(full / "warehouse")
    assert len(first) == 10  # with deliveries and delivery_attempts (issue 14)
    pipeline.run(full)  # from the staging cache
    assert file_hashes(full / "warehouse") == first
    assert len(list((full / "warehouse" / "staging").glob("*.parquet"))) == 3
    # incremental: two segments first, the third later
    inc = make_data_dir(tmp_path / "inc")
    paths = mixed_log().write(inc, segments=3)
    third = paths[2].read_bytes()
    paths[2].unlink()
    pipeline.run(inc)
    paths[2].write_bytes(third)
    summary = pipeline.run(inc)
    assert summary.cached_segments == 2
    assert file_hashes(inc / "warehouse") == first


def test_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="3")
    b.write(data, torn_tail=b'{"crc32":"00000000","v":1,"seq":3,"ev')
    with caplog.at_level(logging.WARNING, logger="clickledger.pipeline"):
        summary = pipeline.run(data)
    assert [(s.line_no, s.torn) for s in summary.skipped] == [(3, True)]
    assert "skipping torn last line 3 of segment-00000001.ndjson" in caplog.text
    assert "torn last line 3 of segment-00000001.ndjson" in summary.describe()
    assert summary.conversions == 1


def test_a_corrupt_line_refuses_the_run_unless_skipped(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="3")
    b.click(cid(2))
    [path] = b.write(data)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"amount":"3"', b'"amount":"4"')
    path.write_bytes(b"".join(lines))
    with pytest.raises(CorruptLogError) as err:
        pipeline.run(data)
    assert (err.value.segment.name, err.value.line_no) == ("segment-00000001.ndjson", 2)
    assert main(["run", "--data", str(data)]) == 2
    assert "segment-00000001.ndjson line 2 is corrupt" in capsys.readouterr().err
    assert main(["run", "--data", str(data), "--skip-corrupt"]) == 0
    out = capsys.readouterr().out
    assert "skipped      CORRUPT line 2 of segment-00000001.ndjson" in out
    assert pipeline.load(data).clicks.height == 2


def test_progress_on_many_segments_and_missing_fx_file(tmp_path, capsys):
    data = make_data_dir(tmp_path / "data", fx=None)
    mixed_log().write(data, segments=20)  # progress starts at 20 segments
    assert main(["run", "--data", str(data)]) == 0
    captured = capsys.readouterr()
    assert "staging 20/20 segments" in captured.err  # not a terminal: plain lines
    assert "fx_rates.csv not found" in captured.err
    assert "no fx_rates.csv" in captured.out
    conversions = pipeline.load(data).conversions
    assert set(conversions.filter(pl.col("currency") == "EUR")["not_counted_reason"]) <= {
        "fx_missing", "pending", "rejected"}
    (data / "fx_rates.csv").write_text(FX_CSV, encoding="utf-8")


def test_demo_steps_print_both_summaries(demo, capsys):
    from clickledger.pipeline_cli import demo_steps

    data, _ = demo
    assert demo_steps(data) == 0
    out = capsys.readouterr().out
    assert "clickledger run:" in out and "clickledger credit:" in out


def test_registering_the_commands_imports_no_heavy_library():
    code = ("import sys, clickledger.cli; clickledger.cli.build_parser(); "
            "print(sorted(m for m in ('polars', 'duckdb', 'pandera') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
