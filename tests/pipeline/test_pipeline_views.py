"""The ready-made views of pipeline.views, on a small hand-written log with exact figures."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

import pipeline
from pipeline import views
from tests.support.log_builder import T0, LogBuilder, cid, make_data_dir


@pytest.fixture
def wh(tmp_path):
    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    for n in range(1, 5):  # day 1: 4 clicks of aff1, 2 approved (100 and 50 USD), 1 pending
        b.click(cid(n))
    b.postback(cid(1), amount="100")
    b.postback(cid(2), amount="50")
    b.postback(cid(3), amount="10", status="pending")
    b.now = T0 + timedelta(days=1)
    b.click(cid(5), affiliate_id="aff2")  # day 2: 1 click, 1 in EUR, 1 in BRL (no rate)
    b.click(cid(6), affiliate_id="aff2")
    b.postback(cid(5), amount="10", currency="EUR")
    b.postback(cid(6), amount="7", currency="BRL")
    b.write(data)
    pipeline.run(data)
    return pipeline.load(data)


def test_kpis_by_day(wh):
    table = views.kpis(wh)
    day1, day2 = table.rows(named=True)
    assert (day1["clicks"], day1["conversions"], day1["pending"]) == (4, 2, 1)
    assert day1["revenue"] == D("150") and day1["payouts"] == D("105")  # 70 % share
    assert day1["margin"] == D("45") and day1["conversion_rate"] == 0.5
    assert day1["epc"] == pytest.approx(105 / 4)
    assert (day2["clicks"], day2["conversions"]) == (2, 1)  # the BRL one does not count
    assert day2["revenue"] == D("12")  # 10 EUR at 1.2


def test_kpis_by_affiliate_and_bad_grouping(wh):
    by_aff = views.kpis(wh, by=["affiliate_id"])
    assert by_aff.select("affiliate_id", "clicks", "conversions").rows() == [("aff1", 4, 2), ("aff2", 2, 1)]
    with pytest.raises(ValueError, match="kpis can group by"):
        views.kpis(wh, by=["colour"])


def test_funnel_and_currency_mix_never_sum_a_missing_rate_as_zero(wh):
    assert views.status_funnel(wh).select("status", "conversions", "counted").rows() == [
        ("approved", 4, 3), ("pending", 1, 0)]
    mix = {r["currency"]: r for r in views.currency_mix(wh).rows(named=True)}
    assert mix["BRL"]["amount_base"] is None and mix["BRL"]["without_rate"] == 1
    assert mix["EUR"]["amount_base"] == D("12") and mix["USD"]["conversions"] == 3


def test_issues_by_partner(wh):
    table = views.issues_by_partner(wh)
    assert ("acme", "fx_missing", 1) in table.rows()
