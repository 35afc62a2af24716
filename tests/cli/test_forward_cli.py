"""`clickledger forward` (a pass, --resend, --replay, --dry-run) and `clickledger deliveries`,
and the tables they leave in the warehouse."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

import pipeline
from clickledger.cli import main
from clickledger.forward_cli import DELIVERY_STATES
from pipeline.forwarding.state import STATES
from pipeline.forwarding.tables import build_delivery_tables
from receiver.contract.datadir import DataDir
from tests.support.forwarding import forwarding_data
from tests.support.log_builder import LogBuilder, cid
from tests.support.sink import running_sink


@pytest.fixture
def sink():
    with running_sink() as running:
        yield running


def setup(tmp_path, sink):
    endpoints = (f'[[affiliates]]\nid = "aff1"\npoints_per_unit = 100\n[[affiliates.postbacks]]\n'
                 f'url = "{sink.url}/ok?c={{click_id}}&e={{event}}&token=abcdefghijklmnop"\n'
                 f'[[affiliates]]\nid = "aff2"\n[[affiliates.postbacks]]\nurl = "{sink.url}/fail"\n')
    data = forwarding_data(tmp_path / "data", endpoints)
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10", at=datetime(2024, 5, 1, 13, tzinfo=UTC))
    b.click(cid(2))
    b.postback(cid(2), amount="20", at=datetime(2024, 5, 3, 13, tzinfo=UTC))
    b.click(cid(3), affiliate_id="aff2")
    b.postback(cid(3), amount="5")
    b.write(data)
    return data


def test_a_pass_then_the_deliveries(tmp_path, sink, capsys):
    data = setup(tmp_path, sink)
    assert main(["run", "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["forward", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "3 new deliveries planned, 3 attempts" in out
    assert "deliveries   delivered 2, failed 1" in out and "next attempt" in out
    assert "token=abcd…" in out and "abcdefghijklmnop" not in out
    assert len(sink.requests("/ok")) == 2 and len(sink.requests("/fail")) == 1
    assert main(["deliveries", "--data", str(data), "--state", "failed"]) == 0
    out = capsys.readouterr().out
    assert "clickledger deliveries: 1 failed" in out and cid(3) in out and "HTTP 500" in out
    assert main(["deliveries", "--data", str(data), "--affiliate", "aff1"]) == 0
    out = capsys.readouterr().out
    assert out.count("delivered") == 2 and "+700 pts" in out and "+1400 pts" in out
    wh = pipeline.load(data)  # the pass refreshed the warehouse's delivery tables
    rows = wh.deliveries.sort("click_id").select("click_id", "event", "state", "attempts", "points",
                                                 "last_http_status").rows()
    assert rows == [(cid(1), "approved", "delivered", 1, 700, 200), (cid(2), "approved", "delivered", 1, 1400, 200),
                    (cid(3), "approved", "failed", 1, None, 500)]
    assert wh.deliveries["url"].str.contains("abcdefghijklmnop").sum() == 0
    assert wh.delivery_attempts.height == 3
    by_state = wh.sql("select state, count(*) as n from deliveries group by state order by state")
    assert by_state.rows() == [("delivered", 2), ("failed", 1)]


def test_resend_sends_the_same_delivery_id_again(tmp_path, sink, capsys):
    data = setup(tmp_path, sink)
    assert main(["forward", "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["forward", "--data", str(data), "--resend", "dlv_nope"]) == 2
    assert "no delivery 'dlv_nope'" in capsys.readouterr().err
    ident = build_delivery_tables(data)[0].filter(
        pl.col("click_id") == cid(1))["delivery_id"][0]
    assert main(["forward", "--data", str(data), "--resend", ident]) == 0
    assert f"delivered {ident}" in capsys.readouterr().out.replace("  ", " ").replace("  ", " ")
    assert len(sink.requests(f"c={cid(1)}")) == 2


def test_replay_a_range_after_an_outage(tmp_path, sink, capsys):
    data = setup(tmp_path, sink)
    assert main(["forward", "--data", str(data)]) == 0
    assert main(["forward", "--data", str(data), "--replay", "--affiliate", "aff1"]) == 2
    assert "--replay needs --affiliate ID and --since DAY" in capsys.readouterr().err
    assert main(["forward", "--data", str(data), "--replay", "--affiliate", "nobody", "--since", "2024-05-02"]) == 2
    assert "affiliate 'nobody' is not in config.toml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["forward", "--data", str(data), "--replay", "--affiliate", "aff1", "--since", "May 2"])
    assert main(["forward", "--data", str(data), "--replay", "--affiliate", "aff1", "--since", "2024-05-02"]) == 0
    assert "1 deliveries to aff1 since 2024-05-02 asked for again" in capsys.readouterr().out
    assert len(sink.requests(f"c={cid(2)}")) == 2 and len(sink.requests(f"c={cid(1)}")) == 1


def test_dry_run_prints_and_sends_nothing(tmp_path, sink, capsys):
    data = setup(tmp_path, sink)
    assert main(["forward", "--data", str(data), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 deliveries would be sent now (nothing sent)" in out and f"c={cid(1)}&e=approved" in out
    assert sink.requests() == [] and not DataDir(data).deliveries_path.exists()
    assert not DataDir(data).points_path.exists()
    assert main(["forward", "--data", str(data), "--dry-run", "--follow"]) == 2


def test_the_cli_states_are_the_pipelines():
    assert DELIVERY_STATES == STATES


def test_a_config_without_publishers_says_so(tmp_path, capsys):
    data = forwarding_data(tmp_path / "data", "")
    LogBuilder().write(data)
    assert main(["forward", "--data", str(data)]) == 0
    assert "no publisher endpoint in" in capsys.readouterr().out
