"""Which deliveries exist, what they say, and their points (pipeline.forwarding.plan, render)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal as D
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from pipeline.forwarding.plan import conversion_events, delivery_id, plan_deliveries, points_for
from pipeline.forwarding.render import mask_url, render_url, sign
from pipeline.runner import derive_conversions
from tests.support.forwarding import forwarding_data
from tests.support.log_builder import LogBuilder, cid

NOW = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
ENDPOINTS = """\
[[affiliates]]
id = "aff1"
points_per_unit = 1000

[[affiliates.postbacks]]
url = "https://pub.example/cb?click={sub1}&payout={payout}&status={status}&tx={transaction_id}&pts={points}&e={event}"
events = ["pending", "approved", "rejected", "reversed"]

[[affiliates.postbacks]]
url = "https://other.example/hook/{click_id}"
method = "POST"
events = ["approved", "reversed"]
"""


def plan(data, known=None, ledger=None, since=None):
    core = derive_conversions(data)
    return plan_deliveries(core.config, core.conversions, core.history, core.clicks,
                           known=set() if known is None else known, points_ledger=ledger or [], now=NOW,
                           since=since)


@pytest.fixture
def data(tmp_path):
    return forwarding_data(tmp_path / "data", ENDPOINTS)


def test_points_are_rounded_half_to_even():
    assert [points_for(D(v), D(1000)) for v in ("0.0125", "0.0135", "0.0005", "7.00049")] == [12, 14, 0, 7000]
    assert points_for(D("2.5"), D("1")) == 2 and points_for(D("3.5"), D("1")) == 4


def test_macros_are_url_encoded_where_they_land():
    values = {"sub1": "a&b=c d/é", "click_id": "x?y#z", "payout": D("1.5"), "points": 7}
    url = render_url("https://p.example/cb/{click_id}?s={sub1}&p={payout}&n={points}&u={custom.none}", values)
    parts = urlsplit(url)
    assert parts.path == "/cb/x%3Fy%23z" and parts.fragment == ""
    assert parse_qs(parts.query, keep_blank_values=True) == {"s": ["a&b=c d/é"], "p": ["1.50"], "n": ["7"],
                                                             "u": [""]}


def test_pending_approved_reversed_plans_plus_n_then_minus_n_points(data):
    b = LogBuilder()
    b.click(cid(1), custom_data={"sub1": "fb&x", "campaign-name": "spring"})
    b.postback(cid(1), amount="10.05", status="pending", status_updates=True)  # share 70 % = 7.035 USD
    b.postback(cid(1), status="approved", result="duplicate", status_updates=True)
    b.postback(cid(1), status="reversed", result="duplicate", status_updates=True)
    b.write(data)
    result = plan(data)
    first = [(d["event"], d["points"]) for d in result.deliveries if d["endpoint"].startswith("https://pub")]
    assert first == [("pending", 7035), ("approved", 7035), ("reversed", -7035)]
    assert [(e["kind"], e["points"], e["affiliate"]) for e in result.points] == [("credit", 7035, "aff1"),
                                                                                ("debit", 7035, "aff1")]
    pending = result.deliveries[0]
    query = parse_qs(urlsplit(pending["url"]).query)
    assert query == {"click": ["fb&x"], "payout": ["7.035"], "status": ["pending"], "tx": [cid(1)],
                     "pts": ["7035"], "e": ["pending"]}
    hook = [d for d in result.deliveries if d["method"] == "POST"]
    assert [d["event"] for d in hook] == ["approved", "reversed"]
    body = orjson.loads(hook[0]["body"])
    assert body["points"] == 7035 and body["payout_base"] == "7.035" and body["custom.campaign-name"] == "spring"
    assert body["delivery_id"] == hook[0]["delivery_id"] and hook[0]["url"] == f"https://other.example/hook/{cid(1)}"
    # each event waits for the one before it, per endpoint: a reversal never overtakes its approval
    by_event = {d["event"]: d for d in result.deliveries if d["method"] == "GET"}
    assert by_event["pending"]["after"] is None
    assert by_event["approved"]["after"] == by_event["pending"]["delivery_id"]
    assert by_event["reversed"]["after"] == by_event["approved"]["delivery_id"]
    assert hook[1]["after"] == hook[0]["delivery_id"]


def test_planning_again_adds_nothing_and_ids_are_stable(data):
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="4")
    b.write(data)
    first = plan(data)
    ids = {d["delivery_id"] for d in first.deliveries}
    assert len(ids) == 2
    again = plan(data, known=set(ids), ledger=first.points)
    assert again.deliveries == [] and again.points == []
    rebuilt = plan(data)  # a rebuild from scratch gives the same ids
    assert {d["delivery_id"] for d in rebuilt.deliveries} == ids
    endpoint = derive_conversions(data).config.affiliates["aff1"].postbacks[0].endpoint_id
    assert delivery_id(cid(1), cid(1), "approved", "aff1", endpoint) in ids


def test_a_reversal_takes_back_the_credited_points_never_a_recomputation(data, tmp_path):
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10", status_updates=True)
    b.write(data)
    first = plan(data)
    assert [e["points"] for e in first.points] == [7000]
    credited = [{**first.points[0], "points": 6500}]  # as credited then, under other terms
    b.postback(cid(1), status="reversed", result="duplicate", status_updates=True)
    b.write(data)
    later = plan(data, known={d["delivery_id"] for d in first.deliveries}, ledger=credited)
    assert [(d["event"], d["points"]) for d in later.deliveries] == [("reversed", -6500), ("reversed", -6500)]
    assert [(e["kind"], e["points"]) for e in later.points] == [("debit", 6500)]


def test_an_approval_that_does_not_count_is_not_told(data):
    b = LogBuilder()
    b.click(cid(1), ttl_hours=1)
    b.postback(cid(1), amount="5", at=datetime(2024, 5, 1, 15, tzinfo=UTC), status_updates=True)  # expired
    b.click(cid(2), offer_id="peer-app")
    b.postback(cid(2), amount="5", currency="JPY")  # no fx rate: no share in base currency
    b.click(cid(3))
    b.postback(cid(3), amount="5", status="rejected")
    b.write(data)
    result = plan(data)
    assert [(d["click_id"], d["event"], d["points"]) for d in result.deliveries] == [(cid(3), "rejected", None)]
    assert result.points == []


def test_events_follow_the_pipelines_status_history(data):
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="5", status="pending", status_updates=True)
    b.postback(cid(1), status="pending", result="duplicate", status_updates=True)  # no step: not told twice
    b.postback(cid(1), status="approved", result="duplicate", status_updates=True)
    b.postback(cid(1), status="pending", result="duplicate", status_updates=True)  # backwards: ignored
    b.write(data)
    core = derive_conversions(data)
    events = conversion_events(core.conversions, core.history)[(cid(1), cid(1))]
    assert [e.event for e in events] == ["pending", "approved"]
    assert list(core.conversions["status_history"][0]) == ["pending", "approved"]


def test_only_configured_publishers_and_a_replay_range(data):
    b = LogBuilder()
    b.click(cid(1), affiliate_id="someone-else")
    b.postback(cid(1), amount="5")
    b.click(cid(2))
    b.postback(cid(2), amount="5", at=datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC))
    b.click(cid(3))
    b.postback(cid(3), amount="5", at=datetime(2024, 5, 3, 8, tzinfo=UTC))
    b.write(data)
    assert {d["click_id"] for d in plan(data).deliveries} == {cid(2), cid(3)}
    assert {d["click_id"] for d in plan(data, since=datetime(2024, 5, 3, tzinfo=UTC)).deliveries} == {cid(3)}


def test_secrets_in_urls_are_masked_for_display():
    assert mask_url("https://u:pw@p.example/cb?token=abcdefghijkl&x=1&api_key=short&sig={delivery_id}") == (
        "https://…@p.example/cb?token=abcd…&x=1&api_key=…&sig={delivery_id}")


def test_our_signature_is_the_standard_webhooks_one():
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    body = b'{"a":1}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = {"webhook-id": "dlv_1", "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret.encode(), "dlv_1", timestamp, body)}
    assert Webhook(secret).verify(body, headers) == {"a": 1}
    headers["webhook-id"] = "dlv_2"
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(body, headers)
