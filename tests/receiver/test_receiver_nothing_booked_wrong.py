"""Issue 12, "Nothing booked wrong without a word": through the real app, then the pipeline.

- an amount under a name the partner's parameters do not read is listed (`amount_not_recognised`);
- a status update carrying the amount the first postback lacked gives the conversion its amount;
- an unfilled macro in the click id (a profile's) or an amount is refused with 400
  `unsubstituted_macro` naming the field, and postback_issues names the macro of any field;
- a parameter repeated with differing values is listed (`repeated_parameter`);
- a request the HTTP server refused before the app is listed with its code.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import polars as pl
import pytest

import pipeline
from pipeline.sent_issues import money_params, money_words
from tests.support.harness import Harness
from tests.support.postbacks import DIALECT_ROUTES, dialect_setup, send

PROFILE = "/postback/key-prof"  # partner prof: the keitaro preset (subid, tid, payout, status lead/sale)


def issues(h: Harness) -> pl.DataFrame:
    h.close()
    tables, _ = pipeline.derive(h.data_dir, use_cache=False)
    return tables["postback_issues"]


def derived(h: Harness) -> dict[str, pl.DataFrame]:
    h.close()
    tables, _ = pipeline.derive(h.data_dir, use_cache=False)
    return tables


def of_reason(frame: pl.DataFrame, reason: str) -> list[dict[str, Any]]:
    return frame.filter(pl.col("reason") == reason).to_dicts()


# ---------------------------------------------------------------- an amount the profile does not read


@pytest.mark.parametrize("name", ["sum", "revenue", "payout_usd", "event_revenue", "amount_usd", "price", "value",
                                  "eventRevenue", "af_revenue", "Sum", "REVENUE", "reward", "commission_total"])
def test_money_looking_names(name: str) -> None:
    assert money_words(name)


@pytest.mark.parametrize("name", ["summary", "consumer", "survey_id", "age", "uid", "sub1", "subid", "status",
                                  "valuation", "prepaid", "tid", "offer_id"])
def test_names_that_are_not_money(name: str) -> None:
    assert not money_words(name)


def test_a_money_parameter_needs_a_number() -> None:
    custom = {"sum": "3.50", "revenue": "abc", "price": "{price}", "value": ["1,5", "2"], "age": "25",
              "payout_usd": 12, "cost": True, "total": "$1 234.50"}
    assert money_params(custom) == [("sum", "3.50"), ("value", "1,5"), ("payout_usd", "12"),
                                    ("total", "$1 234.50")]


def test_redtracks_sum_on_a_profile_is_listed_with_the_line_that_reads_it(harness: Harness) -> None:
    """RedTrack sends sum=3.50: a profile reading payout/revenue books 0, and says so."""
    click = harness.link_click("prof-1")
    ex = harness.get(PROFILE, params={"subid": click, "tid": "rt-1", "status": "sale", "sum": "3.50"})
    assert ex.record["result"] == "recorded" and ex.fields["amount"] == "0"
    (row,) = of_reason(issues(harness), "amount_not_recognised")
    assert (row["event_id"], row["transaction_id"], row["result"]) == (ex.record["event_id"], "rt-1", "recorded")
    assert "sum = '3.50'" in row["detail"]
    assert "config.toml line" in row["detail"] and 'add "sum" to partner \'prof\'\'s [partners.params] amount' in \
        row["detail"]


def test_appsflyers_event_revenue_on_a_seed_dialect_is_listed(harness: Harness) -> None:
    click = harness.link_click("alpha-1")
    ex = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": click, "transaction_id": "af-1",
                                              "event_revenue": "21.00", "sub1": "x"})
    assert ex.record["result"] == "recorded" and ex.fields["amount"] == "0"
    (row,) = of_reason(issues(harness), "amount_not_recognised")
    assert "event_revenue = '21.00'" in row["detail"] and "send it as amount (or payout)" in row["detail"]


def test_no_amount_issue_when_an_amount_was_read_or_nothing_looks_like_money(harness: Harness) -> None:
    click = harness.link_click("prof-1")
    harness.get(PROFILE, params={"subid": click, "tid": "a", "payout": "2", "sum": "3.50"})  # payout was read
    harness.get(PROFILE, params={"subid": click, "tid": "b", "revenue_share": "half"})  # not a number
    harness.get(PROFILE, params={"subid": click, "tid": "c", "age": "25", "sub1": "7"})  # no money word
    harness.get(PROFILE, params={"subid": click, "tid": "d", "payout": "0", "sum": "3.50"})  # 0 was sent
    assert of_reason(issues(harness), "amount_not_recognised") == []


# ---------------------------------------------------------------- a status update brings the amount


def test_a_pending_postback_without_payout_then_the_approval_with_it(harness: Harness) -> None:
    """The issue's example: pending without payout, then approval with payout=21.00: approved, 21.00."""
    (harness.data_dir / "fx_rates.csv").write_text("date,currency,rate\n2020-01-01,EUR,1.1\n", encoding="utf-8")
    click = harness.link_click("prof-1")
    assert harness.get(PROFILE, params={"subid": click, "tid": "p-1", "status": "lead"}).record["result"] == "recorded"
    assert harness.get(PROFILE, params={"subid": click, "tid": "p-1", "status": "sale", "payout": "21.00",
                                        "currency": "EUR"}).record["result"] == "duplicate"
    tables = derived(harness)
    row = tables["conversions"].row(0, named=True)
    assert (row["status"], row["amount"], row["currency"]) == ("approved", D("21.00"), "EUR")
    assert (row["status_history"], row["conflicting_duplicates"], row["counts"]) == (["pending", "approved"], 0, True)
    assert tables["postback_issues"].is_empty()


def test_a_later_different_amount_is_still_a_conflict(harness: Harness) -> None:
    click = harness.link_click("beta-1")
    send(harness, "/postback/key-beta", {"click_id": click, "txn": "b-1", "status": "pending"})
    send(harness, "/postback/key-beta", {"click_id": click, "txn": "b-1", "status": "approved", "payout": "21"})
    send(harness, "/postback/key-beta", {"click_id": click, "txn": "b-1", "status": "approved", "payout": "25"})
    tables = derived(harness)
    row = tables["conversions"].row(0, named=True)
    assert (row["status"], row["amount"], row["conflicting_duplicates"]) == ("approved", D("21"), 1)
    (conflict,) = of_reason(tables["postback_issues"], "conflicting_duplicate")
    assert "recorded 21.00" in conflict["detail"] and "this one says 25.00" in conflict["detail"]


def test_a_recorded_amount_is_never_replaced(harness: Harness) -> None:
    click = harness.link_click("beta-1")
    send(harness, "/postback/key-beta", {"click_id": click, "txn": "b-2", "status": "pending", "payout": "5"})
    send(harness, "/postback/key-beta", {"click_id": click, "txn": "b-2", "status": "approved", "payout": "21"})
    row = derived(harness)["conversions"].row(0, named=True)
    assert (row["status"], row["amount"], row["conflicting_duplicates"]) == ("approved", D("5"), 1)


def test_a_partner_whose_first_status_is_final_takes_no_later_amount(harness: Harness) -> None:
    click = harness.link_click("alpha-1")  # alpha: status_updates = false
    params = {"api_key": "key-alpha", "click_id": click, "transaction_id": "f-1"}
    harness.get("/api/postback", params={**params, "status": "pending"})
    harness.get("/api/postback", params={**params, "status": "approved", "amount": "21"})
    row = derived(harness)["conversions"].row(0, named=True)
    assert (row["status"], row["amount"], row["conflicting_duplicates"]) == ("pending", D("0"), 1)


# ---------------------------------------------------------------- unfilled macros

SYNTAXES = ["{subid}", "{{subid}}", "[subid]", "[%SUBID%]", "##SUBID##", "#subid#", "${(subid)!}", "(subid)",
            "%SUBID%", "%%SUBID%%", "$SUBID$", "@subid@", "<subid>", "__SUBID__", "REPLACE", "OPTIONAL"]


@pytest.mark.parametrize("macro", SYNTAXES)
def test_a_profiles_click_id_macro_is_refused_naming_the_field(harness: Harness, macro: str) -> None:
    ex = harness.get(PROFILE, params={"subid": macro, "tid": "m-1", "payout": "2"})
    assert (ex.status, ex.json["error"], ex.record["error"]) == (400, "unsubstituted_macro", "unsubstituted_macro")
    assert f"click_id (parameter 'subid') is the unfilled macro {macro!r}" in ex.json["message"]
    assert (ex.fields["macro_field"], ex.fields["macro_param"], ex.fields["macro"]) == ("click_id", "subid", macro)


@pytest.mark.parametrize("macro", ["{payout}", "[payout]", "##PAYOUT##", "%PAYOUT%", "(payout)"])
@pytest.mark.parametrize("dialect", [*DIALECT_ROUTES, "profile"])
def test_an_amount_macro_is_refused_not_invalid_amount_in_every_dialect(harness: Harness, dialect: str,
                                                                         macro: str) -> None:
    if dialect == "profile":
        path, params = PROFILE, {"subid": harness.link_click("prof-1"), "payout": macro}
        name = "payout"
    else:
        path, params, _ = dialect_setup(harness, dialect)
        params, name = {**params, "payout": macro}, "payout"
    ex = send(harness, path, params, "json" if dialect == "earn" else "query")
    assert (ex.status, ex.json["error"]) == (400, "unsubstituted_macro"), ex.json
    assert f"amount (parameter {name!r}) is the unfilled macro {macro!r}" in ex.json["message"]
    assert ex.fields["macro_field"] == "amount"


def test_a_commission_or_currency_macro_is_refused_too(harness: Harness) -> None:
    path, params, _ = dialect_setup(harness, "network")
    ex = send(harness, path, {**params, "commission": "{commission}"})
    assert (ex.json["error"], ex.fields["macro_field"]) == ("unsubstituted_macro", "commission")
    ex = send(harness, path, {**params, "currency": "{currency}"})
    assert (ex.json["error"], ex.fields["macro_field"]) == ("unsubstituted_macro", "currency")


def test_a_seed_dialects_click_id_macro_stays_click_not_found(harness: Harness) -> None:
    """The seeds' contract (tests/receiver/test_seed_examples.py): 404 click_not_found, told it is a macro."""
    ex = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": "##CLICK_ID##"})
    assert (ex.status, ex.json["error"]) == (404, "click_not_found")
    assert "is a macro your tracker sent unfilled" in ex.json["message"]


def test_postback_issues_name_the_macro_of_every_field(harness: Harness) -> None:
    click = harness.link_click("prof-1")
    refused = harness.get(PROFILE, params={"subid": click, "tid": "m-2", "payout": "{payout}"})
    recorded = harness.get(PROFILE, params={"subid": click, "tid": "[txid]", "status": "##STATUS##", "payout": "1"})
    assert recorded.record["result"] == "recorded"  # only a click id or an amount is refused for a macro
    seed = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": "{click_id}",
                                                "transaction_id": "order-{order_id}"})
    plain = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": "{click_id}"})
    rows = {row["event_id"]: row for row in of_reason(issues(harness), "unsubstituted_macro")}
    assert set(rows) == {ex.record["event_id"] for ex in (refused, recorded, seed, plain)}
    assert "amount (parameter 'payout') is the unfilled macro '{payout}'" in rows[refused.record["event_id"]]["detail"]
    detail = rows[recorded.record["event_id"]]["detail"]
    assert "transaction_id is '[txid]'" in detail and "status is '##STATUS##'" in detail
    assert rows[recorded.record["event_id"]]["result"] == "recorded"
    detail = rows[seed.record["event_id"]]["detail"]
    assert "click_id is '{click_id}'" in detail and "transaction_id is 'order-{order_id}' (the macro '{order_id}')" \
        in detail
    assert rows[plain.record["event_id"]]["detail"].startswith("The click id is a macro")


# ---------------------------------------------------------------- repeated parameters


def test_a_parameter_repeated_with_differing_values_is_listed(harness: Harness) -> None:
    click = harness.link_click("prof-1")
    ex = harness.get(PROFILE, query_string=f"subid={click}&tid=r-1&tid=r-2&payout=3&sub1=a&sub1=a")
    assert ex.record["result"] == "recorded" and ex.fields["transaction_id"] == "r-1"  # the first is used
    assert ex.fields["repeated_params"] == '["tid","sub1"]'
    assert ex.record["custom_data"] == {"tid": ["r-1", "r-2"], "sub1": ["a", "a"]}
    (row,) = of_reason(issues(harness), "repeated_parameter")
    assert row["event_id"] == ex.record["event_id"]
    assert "tid was sent 2 times with different values ('r-1', 'r-2'): the first, 'r-1', was used" in row["detail"]
    assert "sub1" not in row["detail"]  # the same value twice says nothing new


def test_a_json_array_is_no_repeat(harness: Harness) -> None:
    click = harness.link_click("prof-1")
    ex = harness.post(PROFILE, json={"subid": click, "tid": "j-1", "payout": 1, "tags": ["a", "b"]})
    assert ex.record["result"] == "recorded" and "repeated_params" not in ex.fields
    ex = harness.post(PROFILE, body=f"subid={click}&tid=f-1&sub=x&sub=y",
                      content_type="application/x-www-form-urlencoded")
    assert ex.fields["repeated_params"] == '["sub"]'
    assert [row["transaction_id"] for row in of_reason(issues(harness), "repeated_parameter")] == ["f-1"]


# ---------------------------------------------------------------- refused by the HTTP server


def test_a_request_the_server_refused_is_listed_with_its_code(harness: Harness) -> None:
    from waitress.adjustments import Adjustments

    from receiver.http_errors import RecordingParser, log_refused_request

    click = harness.link_click("alpha-1")
    parser = RecordingParser(Adjustments())
    parser.received(f"GET /api/postback?click_id={click}&name=J\xe9r\xf4me HTTP/1.1\r\nHost: x\r\n\r\n"
                    .encode("latin-1"))
    assert parser.completed and parser.error is not None
    log_refused_request(harness.receiver, parser, "203.0.113.9")
    rows = issues(harness).filter(pl.col("kind") == "http_error").to_dicts()
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["reason"], row["error"], row["http_status"]) == ("invalid_request_line", "invalid_request_line", 400)
    assert row["partner_id"] == "alpha"  # found by its click id: support sees whose integration it is
    assert row["detail"].startswith("Refused by the HTTP server") and "The server said: " in row["detail"]


def test_only_a_click_id_macro_counts_as_a_click_id_issue(harness: Harness) -> None:
    """The troubleshooting notebook's "click id missing or unknown" counts click ids, not a
    transaction id's macro (pipeline.issues.click_id_issue)."""
    from pipeline.issues import click_id_issue

    click = harness.link_click("prof-1")
    harness.get(PROFILE, params={"subid": "{subid}", "tid": "m-3"})  # the click id: refused
    harness.get(PROFILE, params={"subid": click, "tid": "{tid}", "payout": "1"})  # recorded, listed
    harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": "[cid]"})  # a seed's click_not_found
    harness.get("/api/postback", params={"api_key": "key-alpha"})  # no click id at all
    table = issues(harness)
    assert table.filter(pl.col("reason") == "unsubstituted_macro").height == 3
    assert table.filter(click_id_issue())["click_id"].to_list() == ["{subid}", "[cid]", None]
