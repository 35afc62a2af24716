"""The status of a profile partner's postback is mapped when the pipeline derives, from the raw
status in the log and the partner's [partners.statuses] in config.toml at that run: a value the
mapping does not know is `unknown` (never counted, listed in postback_issues with the line that
would map it), and fixing the mapping and running again corrects history, through the staging
cache."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pipeline
from tests.support.harness import Harness
from tests.support.log_builder import LogBuilder, cid, make_data_dir

# A Keitaro-like partner that maps lead but not sale (line 8 is its [partners.statuses]).
CONFIG = '''base_currency = "USD"

[[partners]]
id = "tracker"
api_key = "key-tracker"
status_updates = true

[partners.statuses]
pending = ["lead"]

[partners.params]
click_id = ["subid"]
transaction_id = ["tid"]

[[offers]]
id = "o1"
partner = "tracker"
url = "https://shop.example/"
revenue_share = { percent = 50 }

[[links]]
slug = "l1"
offer = "o1"
affiliate = "aff1"
'''
STATUSES_LINE = 8
FIXED = CONFIG.replace('pending = ["lead"]', 'pending = ["lead"]\napproved = ["sale"]')


@pytest.fixture
def tracker(make_harness: Any, tmp_path: Path) -> Harness:
    data = tmp_path / "tracker"
    data.mkdir()
    (data / "config.toml").write_text(CONFIG, encoding="utf-8")
    (data / "fx_rates.csv").write_text("date,currency,rate\n", encoding="utf-8")
    return make_harness(data)


def postback(h: Harness, click: str, tid: str, status: str, payout: str | None = "10") -> Any:
    params = {"subid": click, "tid": tid, "status": status}
    if payout is not None:
        params["payout"] = payout
    return h.get("/postback/key-tracker", params=params)


def test_fixing_a_mapping_and_running_again_corrects_history(tracker: Harness) -> None:
    click = tracker.link_click("l1")
    assert postback(tracker, click, "T-1", "sale").json == {"ok": True, "result": "recorded"}
    tracker.close()
    data = tracker.data_dir

    first = pipeline.run(data)
    conversions = first.warehouse.conversions
    row = conversions.row(0, named=True)
    assert (row["status"], row["status_raw"], row["counts"], row["not_counted_reason"]) == \
        ("unknown", "sale", False, "unknown_status")
    assert first.counted == 0 and first.unknown == 1 and "unknown status 1" in first.describe()
    issue = first.warehouse.postback_issues.row(0, named=True)
    assert issue["reason"] == "unknown_status" and issue["status_raw"] == "sale"
    assert f'config.toml line {STATUSES_LINE}: add "sale" to [partners.statuses] approved' in issue["detail"]
    earnings = first.warehouse.earnings.row(0, named=True)
    assert (earnings["counted"], earnings["amount_base"], earnings["pending"], earnings["rejected"]) == \
        (0, D(0), 0, 0)

    tracker.rewrite_config(FIXED)
    again = pipeline.run(data)
    assert again.cached_segments == again.segments == 1  # the staged log is reused: it holds no mapping
    row = again.warehouse.conversions.row(0, named=True)
    assert (row["status"], row["counts"], row["amount"]) == ("approved", True, D(10))
    assert again.warehouse.postback_issues.is_empty()
    assert again.counted == 1 and again.amount_base == D(10)
    postbacks = again.warehouse.postbacks
    assert postbacks["status"].to_list() == ["approved"]  # postbacks show the mapped status too


def test_an_unknown_status_ranks_below_pending_and_a_later_update_moves_it(tracker: Harness) -> None:
    click = tracker.link_click("l1")
    postback(tracker, click, "T-2", "deposit")
    postback(tracker, click, "T-2", "deposit", payout=None)  # the same unknown value again
    postback(tracker, click, "T-2", "approved", payout=None)  # the seed vocabulary is the default mapping
    tables, _ = pipeline.derive(tracker.data_dir, use_cache=False)
    row = tables["conversions"].row(0, named=True)
    assert (row["status"], row["status_history"], row["counts"]) == ("approved", ["unknown", "approved"], True)
    issues = tables["postback_issues"].select("seq", "reason").rows()
    # each postback with the unknown value is listed (the recorded one and the repeat), the update is not
    assert [reason for _, reason in issues] == ["unknown_status", "unknown_status"]


def test_an_unknown_update_never_moves_a_known_status(tracker: Harness) -> None:
    click = tracker.link_click("l1")
    postback(tracker, click, "T-3", "lead")
    postback(tracker, click, "T-3", "chargedback", payout=None)
    tables, _ = pipeline.derive(tracker.data_dir, use_cache=False)
    row = tables["conversions"].row(0, named=True)
    assert (row["status"], row["status_history"]) == ("pending", ["pending"])
    issue = tables["postback_issues"].row(0, named=True)
    assert (issue["reason"], issue["status_raw"]) == ("unknown_status", "chargedback")


def test_a_partner_no_longer_configured_keeps_the_status_the_receiver_wrote(tracker: Harness) -> None:
    click = tracker.link_click("l1")
    postback(tracker, click, "T-4", "lead")
    tracker.close()
    text = CONFIG.replace('id = "tracker"\napi_key = "key-tracker"', 'id = "renamed"\napi_key = "key-tracker"')
    text = text.replace('partner = "tracker"', 'partner = "renamed"')
    (tracker.data_dir / "config.toml").write_text(text, encoding="utf-8")
    tables, _ = pipeline.derive(tracker.data_dir, use_cache=False)
    assert tables["conversions"]["status"].to_list() == ["pending"]


def test_a_seed_dialects_unknown_value_stays_rejected_and_is_listed(tmp_path: Path) -> None:
    """Seed 003: any other value is rejected (the existing tests hold it); postback_issues now says so."""
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), status="weird", amount="10")
    b.click(cid(2))
    b.postback(cid(2), status="approved", amount="10")
    data = make_data_dir(tmp_path / "data")
    b.write(data)
    tables, _ = pipeline.derive(data, use_cache=False)
    statuses = dict(tables["conversions"].select("click_id", "status").iter_rows())
    assert statuses == {cid(1): "rejected", cid(2): "approved"}
    issues = tables["postback_issues"]
    assert issues.select("click_id", "reason").rows() == [(cid(1), "unknown_status")]
    detail = issues["detail"][0]
    assert "'weird' is not in the seed vocabulary: counted as rejected (seed 003)" in detail
    assert "partner 'acme' (config.toml line " in detail


def test_schemas_hold_the_unknown_status(tracker: Harness) -> None:
    click = tracker.link_click("l1")
    postback(tracker, click, "T-5", "sale")
    tables, _ = pipeline.derive(tracker.data_dir, use_cache=False)  # validated by every pandera schema
    assert tables["postbacks"].filter(pl.col("status") == "unknown").height == 1
