"""Postbacks: the five dialects, GET/POST alike, aliases, defaults, custom_data, error codes,
duplicates, test postbacks, public partners, unrouted and wrong-method requests.

Every request goes through `harness.request`, which asserts that it appended exactly one
log record whose http_status, result and error agree with the answer.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from receiver.app import Settings
from tests.support.ids import uuid_like
from tests.support.network import TEST_CONFIG
from tests.support.postbacks import DIALECT_ROUTES, dialect_setup, send

RECORDED = {"ok": True, "result": "recorded"}
DUPLICATE = {"ok": True, "result": "duplicate"}
TEST = {"ok": True, "result": "test"}
STYLES = ("query", "post_query", "form", "json")


# ---------------------------------------------------------------- every dialect, every way of sending


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("dialect", list(DIALECT_ROUTES))
def test_each_dialect_accepts_get_form_and_json(harness, dialect: str, style: str) -> None:
    path, params, cid = dialect_setup(harness, dialect)
    params = {**params, "status": "approved", "amount": "12.50", "transaction_id": "T-1"}
    ex = send(harness, path, params, style)
    assert (ex.status, ex.json) == (200, RECORDED)
    assert ex.resp.headers["content-type"].startswith("application/json")
    rec, f = ex.record, ex.fields
    assert (rec["kind"], rec["route"], rec["result"], rec["error"]) == (
        "postback", DIALECT_ROUTES[dialect], "recorded", None)
    assert f["dialect"] == dialect
    assert (f["click_id"], f["transaction_id"], f["transaction_id_source"]) == (cid, "T-1", "param")
    assert (f["status_raw"], f["status"], f["amount"]) == ("approved", "approved", "12.50")
    assert f["offer_id"] == harness.receiver.clicks.get(cid).offer_id
    assert ex.custom_data == {}
    again = send(harness, path, params, style)
    assert (again.status, again.json) == (200, DUPLICATE)
    assert again.record["result"] == "duplicate"


def test_get_and_post_are_one_conversion(harness) -> None:
    path, params, _ = dialect_setup(harness, "network")
    assert send(harness, path, params, "query").json == RECORDED
    for style in ("post_query", "form", "json"):
        assert send(harness, path, params, style).json == DUPLICATE


def test_query_wins_over_body(harness) -> None:
    path, params, cid = dialect_setup(harness, "network")
    ex = harness.post(path, query_string=urlencode({**params, "amount": "5"}),
                      json={"amount": "7", "txn": "T-9", "note": "body"})
    assert ex.json == RECORDED
    assert (ex.fields["amount"], ex.fields["transaction_id"]) == ("5", "T-9")
    assert ex.custom_data == {"note": "body"}


# ---------------------------------------------------------------- aliases


@pytest.mark.parametrize("alias", ["click_id", "cid", "clickid", "clickId"])
@pytest.mark.parametrize("style", ["query", "json"])
def test_click_id_aliases(harness, alias: str, style: str) -> None:
    cid = harness.link_click("alpha-1")
    ex = send(harness, "/api/postback", {"api_key": "key-alpha", alias: cid}, style)
    assert ex.json == RECORDED
    assert ex.fields["click_id"] == cid
    assert ex.custom_data == {}


def test_first_click_id_alias_wins_and_the_other_is_kept(harness) -> None:
    cid = harness.link_click("alpha-1")
    ex = harness.get("/api/postback", params={"api_key": "key-alpha", "cid": "other", "click_id": cid})
    assert ex.fields["click_id"] == cid
    assert ex.custom_data == {"cid": "other"}


@pytest.mark.parametrize("alias", ["transaction_id", "txn", "order_id", "txid", "transactionId"])
@pytest.mark.parametrize("style", ["query", "form", "json"])
def test_transaction_id_aliases(harness, alias: str, style: str) -> None:
    path, params, _ = dialect_setup(harness, "network")
    ex = send(harness, path, {**params, alias: "ORD-77"}, style)
    assert ex.json == RECORDED
    assert (ex.fields["transaction_id"], ex.fields["transaction_id_source"]) == ("ORD-77", "param")
    assert alias not in ex.custom_data
    # the same transaction under another alias is the same conversion
    other = "txid" if alias != "txid" else "txn"
    assert send(harness, path, {**params, other: "ORD-77"}, style).json == DUPLICATE


@pytest.mark.parametrize("dialect", list(DIALECT_ROUTES))
def test_payout_is_amount(harness, dialect: str) -> None:
    path, params, _ = dialect_setup(harness, dialect)
    ex = send(harness, path, {**params, "payout": "1.00"})
    assert ex.fields["amount"] == "1.00"
    assert "payout" not in ex.custom_data


def test_amount_wins_over_payout(harness) -> None:
    path, params, _ = dialect_setup(harness, "network")
    ex = send(harness, path, {**params, "payout": "3", "amount": "4"})
    assert ex.fields["amount"] == "4"
    assert ex.custom_data == {"payout": "3"}


def test_key_sources(harness) -> None:
    cid = harness.link_click("alpha-1")
    by_param = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid, "txn": "a"})
    by_header = harness.post("/api/postback", params={"click_id": cid, "status": "confirmed", "txn": "b"},
                             headers={"X-API-Key": "key-alpha"})
    by_path = harness.get("/postback/key-alpha", params={"click_id": cid, "txn": "c"})
    for ex, source in ((by_param, "param"), (by_header, "header"), (by_path, "path")):
        assert ex.json == RECORDED, source
        assert (ex.fields["key_source"], ex.fields["key_partner_id"], ex.fields["key_present"]) == (
            source, "alpha", True)
        assert ex.fields["key_fingerprint"] and "key-alpha" not in ex.fields["key_fingerprint"]
    assert by_path.fields["dialect"] == "publisher"


def test_header_key_wins_over_param_and_path_over_both(harness) -> None:
    cid = harness.link_click("alpha-1")
    ex = harness.get("/api/postback", params={"api_key": "wrong", "click_id": cid},
                     headers={"X-API-Key": "key-alpha"})
    assert ex.json == RECORDED and ex.fields["key_source"] == "header"
    ex = harness.get("/postback/key-alpha", params={"api_key": "wrong", "click_id": cid, "txn": "2"},
                     headers={"X-API-Key": "wrong"})
    assert ex.json == RECORDED and ex.fields["key_source"] == "path"


def test_api_key_sha256_partner(harness) -> None:
    cid = harness.link_click("hashed-1")
    assert harness.get("/api/postback", params={"api_key": "key-hashed", "click_id": cid}).json == RECORDED


# ---------------------------------------------------------------- defaults


def test_defaults_network(harness) -> None:
    path, params, cid = dialect_setup(harness, "network")
    ex = send(harness, path, params)
    f = ex.fields
    assert ex.json == RECORDED
    assert (f["status_raw"], f["status"]) == (None, "approved")  # default confirmed
    assert (f["amount"], f["commission"], f["commission_sent"]) == ("0", "0", False)
    assert (f["currency"], f["currency_source"]) == ("EUR", "offer")  # the offer's currency
    assert (f["transaction_id"], f["transaction_id_source"]) == (cid, "default")
    assert (f["partner_id"], f["affiliate_id"], f["click_source"]) == ("alpha", "aff1", "link")
    assert f["status_updates"] is False
    # no transaction id again: the same conversion
    assert send(harness, path, params).json == DUPLICATE


def test_currency_defaults(harness) -> None:
    cid = harness.link_click("beta-1")  # offer without currency: USD
    ex = harness.get("/postback/key-beta", params={"click_id": cid})
    assert (ex.fields["currency"], ex.fields["currency_source"]) == ("USD", "offer")
    assert ex.fields["status_updates"] is True
    ex = harness.get("/postback/key-beta", params={"click_id": cid, "currency": "gbp", "txn": "2"})
    assert (ex.fields["currency"], ex.fields["currency_source"]) == ("GBP", "param")  # stored uppercase
    ex = harness.post("/postback/key-beta", json={"click_id": cid, "currency": " eur ", "txn": "3"})
    assert ex.fields["currency"] == "EUR"


def test_currency_is_usd_when_the_offer_is_gone(harness) -> None:
    cid = harness.link_click("open-1")
    text = TEST_CONFIG.replace(
        '[[offers]]\nid = "open-offer"\npartner = "open"\nurl = "https://open.example/go"\ncurrency = "GBP"\n', ""
    ).replace('[[links]]\nslug = "open-1"\noffer = "open-offer"\naffiliate = "aff3"\n', "")
    assert text != TEST_CONFIG
    harness.rewrite_config(text)
    assert harness.get("/t/open-1").status == 404  # the reload happened
    ex = harness.get("/postback", params={"cid": cid})
    assert ex.json == RECORDED
    assert (ex.fields["currency"], ex.fields["currency_source"]) == ("USD", "default")


@pytest.mark.parametrize("raw, status", [
    ("confirmed", "approved"), ("approved", "approved"), ("paid", "approved"), ("completed", "approved"),
    ("CONFIRMED", "approved"), ("pending", "pending"), ("rejected", "rejected"), ("declined", "rejected"),
    ("whatever", "rejected"), ("", "approved"),
])
def test_status_normalised(harness, raw: str, status: str) -> None:
    path, params, _ = dialect_setup(harness, "network")
    ex = send(harness, path, {**params, "status": raw})
    assert ex.json == RECORDED
    assert ex.fields["status"] == status
    assert ex.fields["status_raw"] == (raw or None)


def test_status_is_final_at_first_insert(harness) -> None:
    path, params, cid = dialect_setup(harness, "network")
    assert send(harness, path, {**params, "status": "pending", "txn": "T"}).json == RECORDED
    again = send(harness, path, {**params, "status": "confirmed", "txn": "T"})
    assert again.json == DUPLICATE
    assert harness.receiver.conversions._recorded[(cid, "T")] == "pending"


def test_amount_and_commission_values(harness) -> None:
    path, params, _ = dialect_setup(harness, "network")
    ex = send(harness, path, {**params, "amount": "99", "commission": "10"})
    assert (ex.fields["amount"], ex.fields["commission"], ex.fields["commission_sent"]) == ("99", "10", True)
    ex = send(harness, path, {**params, "amount": 50.00, "commission": 7, "txn": "j"}, "json")
    assert (ex.fields["amount"], ex.fields["commission"]) == ("50.0", "7")
    ex = send(harness, path, {**params, "amount": " 0.12345678 ", "txn": "k"})
    assert ex.fields["amount"] == "0.12345678"


# ---------------------------------------------------------------- custom_data


def test_peerclick_custom_parameters(harness) -> None:
    cid = harness.link_click("open-1")
    q = {"cid": cid, "payout": "2.5", "status": "approved", "txid": "PX-1", "currency": "eur",
         "conversion_id": "conv-9", "param1": "a b", "param2": "", "event1": "3", "event10": "0.5",
         "sub_id": "{sub_id}"}
    ex = harness.get("/postback", query_string=urlencode(q))
    assert ex.json == RECORDED
    assert ex.custom_data == {"conversion_id": "conv-9", "param1": "a b", "param2": "", "event1": "3",
                              "event10": "0.5", "sub_id": "{sub_id}"}
    f = ex.fields
    assert (f["amount"], f["transaction_id"], f["currency"], f["status"]) == ("2.5", "PX-1", "EUR", "approved")


def test_publisher_custom_parameters(harness) -> None:
    cid = harness.link_click("beta-1")
    ex = harness.get("/postback/key-beta", params={
        "click_id": cid, "status": "approved", "payout": "1.00", "offer_id": "OFF-5", "survey_id": "S-1",
        "conversion_id": "C-1", "user_id": "user-42", "transaction_id": "TX-1", "q1": "  yes  "})
    assert ex.json == RECORDED
    assert ex.custom_data == {"offer_id": "OFF-5", "survey_id": "S-1", "conversion_id": "C-1",
                              "user_id": "user-42", "q1": "  yes  "}  # unchanged, even spaces
    assert ex.fields["offer_id"] == "beta-app"  # from the click, not the parameter
    assert ex.fields["user_id"] is None


def test_json_custom_values_kept_as_sent(harness) -> None:
    cid = harness.earn_click("p1")
    extra = {"answers": {"q1": ["a", "b"], "q2": {"score": 7}}, "score": 7, "ratio": 0.25, "flag": True,
             "nothing": None, "text": "ünïcödé ✓"}
    ex = harness.post("/api/v1/earn/postback", query_string=f"click_id={cid}",
                      json={"amount": 50.00, "status": "completed", "transactionId": "test_123", **extra})
    assert ex.json == RECORDED
    assert ex.custom_data == extra
    assert (ex.fields["status_raw"], ex.fields["status"]) == ("completed", "approved")
    assert (ex.fields["user_id"], ex.fields["product_id"], ex.fields["click_source"]) == ("u1", "p1", "earn")


def test_campaign_id_is_custom_data_outside_the_advertiser_route(harness) -> None:
    path, params, _ = dialect_setup(harness, "network")
    ex = send(harness, path, {**params, "campaign_id": "anything"})
    assert ex.json == RECORDED
    assert ex.custom_data == {"campaign_id": "anything"}
    assert ex.fields["campaign_id"] is None


def test_form_custom_values_are_strings(harness) -> None:
    path, params, _ = dialect_setup(harness, "peerclick")
    ex = send(harness, path, {**params, "event1": "5", "param3": "x&y=z"}, "form")
    assert ex.custom_data == {"event1": "5", "param3": "x&y=z"}


# ---------------------------------------------------------------- error codes


def assert_refused(ex, status: int, code: str) -> None:
    assert ex.status == status, ex.json
    assert ex.json["ok"] is False and ex.json["error"] == code
    assert ex.record["error"] == code and ex.record["result"] is None
    assert ex.record["kind"] == "postback"


@pytest.mark.parametrize("params", [{}, {"click_id": ""}, {"cid": "  "}, {"status": "approved"}])
def test_click_id_required(harness, params) -> None:
    ex = harness.get("/api/postback", params={"api_key": "key-alpha", **params})
    assert_refused(ex, 400, "click_id_required")
    assert ex.fields["click_id"] is None


def test_click_id_required_before_key_on_public_routes(harness) -> None:
    assert_refused(harness.get("/postback", params={"payout": "1"}), 400, "click_id_required")


@pytest.mark.parametrize("path", ["/api/postback", "/postback", "/postback/advertiser", "/api/v1/earn/postback"])
def test_api_key_required_for_a_key_partner(harness, path: str) -> None:
    cid = harness.link_click("alpha-1")
    params = {"click_id": cid, "campaign_id": "alpha-shop"}
    ex = harness.get(path, params=params)
    assert_refused(ex, 401, "api_key_required")
    assert ex.fields["partner_id"] == "alpha" and ex.fields["key_present"] is False
    # an empty key is no key
    assert_refused(harness.get(path, params={**params, "api_key": ""}), 401, "api_key_required")
    assert_refused(harness.get(path, params=params, headers={"X-API-Key": ""}), 401, "api_key_required")


def test_api_key_required_for_unknown_click_when_no_partner_is_public(make_harness, tmp_path: Path) -> None:
    data = tmp_path / "keys-only"
    data.mkdir()
    (data / "config.toml").write_text(
        '[[partners]]\nid = "p"\napi_key = "k"\n\n[[offers]]\nid = "o"\npartner = "p"\nurl = "https://o.example/"\n',
        encoding="utf-8")
    h = make_harness(data)
    assert_refused(h.get("/api/postback", params={"click_id": uuid_like(5)}), 401, "api_key_required")
    assert_refused(h.get("/api/postback", params={"click_id": uuid_like(5), "api_key": "k"}), 404, "click_not_found")


@pytest.mark.parametrize("key", ["nope", "KEY-ALPHA", "key-alph", "key-hashed-x"])
def test_invalid_api_key_unknown(harness, key: str) -> None:
    cid = harness.link_click("alpha-1")
    ex = harness.get("/api/postback", params={"api_key": key, "click_id": cid})
    assert_refused(ex, 403, "invalid_api_key")
    assert ex.fields["key_partner_id"] is None


def test_invalid_api_key_of_another_partner(harness) -> None:
    cid = harness.link_click("alpha-1")
    ex = harness.get("/api/postback", params={"api_key": "key-beta", "click_id": cid})
    assert_refused(ex, 403, "invalid_api_key")
    assert (ex.fields["key_partner_id"], ex.fields["partner_id"]) == ("beta", "alpha")
    assert_refused(harness.get("/postback/key-beta", params={"click_id": cid}), 403, "invalid_api_key")
    assert_refused(harness.post("/api/postback", params={"click_id": cid}, headers={"X-API-Key": "key-beta"}),
                   403, "invalid_api_key")
    # a public partner's click with another partner's key is refused too
    open_cid = harness.link_click("open-1")
    assert_refused(harness.get("/postback", params={"cid": open_cid, "api_key": "key-alpha"}), 403,
                   "invalid_api_key")
    assert len(harness.receiver.conversions) == 0


def test_invalid_path_key(harness) -> None:
    cid = harness.link_click("beta-1")
    assert_refused(harness.get("/postback/YOUR_KEY", params={"click_id": cid}), 403, "invalid_api_key")


def test_invalid_key_wins_over_missing_click_id(harness) -> None:
    assert_refused(harness.get("/api/postback", params={"api_key": "nope"}), 403, "invalid_api_key")


def test_campaign_mismatch(harness) -> None:
    cid = harness.link_click("camp-a")
    ex = harness.get("/postback/advertiser", params={"campaign_id": "open-offer", "click_id": cid})
    assert_refused(ex, 403, "campaign_mismatch")
    assert ex.fields["campaign_id"] == "open-offer"
    assert_refused(harness.get("/postback/advertiser", params={"campaign_id": "CAMP-1", "click_id": cid}),
                   403, "campaign_mismatch")
    assert_refused(harness.get("/postback/advertiser", params={"click_id": cid}), 400, "campaign_id_required")
    ok = harness.get("/postback/advertiser", params={"campaign_id": "camp-1", "click_id": cid})
    assert ok.json == RECORDED and ok.fields["campaign_id"] == "camp-1"


def test_click_not_found(harness) -> None:
    unknown = uuid_like(4242)
    ex = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": unknown, "amount": "3"})
    assert_refused(ex, 404, "click_not_found")
    assert (ex.fields["click_id"], ex.fields["amount"], ex.fields["key_partner_id"]) == (unknown, "3", "alpha")
    assert_refused(harness.get("/postback", params={"cid": unknown}), 404, "click_not_found")
    assert_refused(harness.post("/api/v1/earn/postback", params={"click_id": unknown}, json={"amount": 1}),
                   404, "click_not_found")
    assert_refused(harness.get("/postback/key-beta", params={"click_id": unknown}), 404, "click_not_found")


def test_click_expired_link(harness) -> None:
    cid = harness.link_click("alpha-1")  # click_ttl_hours = 2
    harness.clock.advance(hours=2)
    assert harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid, "txn": "1"}
                       ).json == RECORDED  # exactly at expiry: still valid
    harness.clock.advance(seconds=1)
    ex = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid, "txn": "2"})
    assert_refused(ex, 410, "click_expired")
    assert "2024-01-01T14:00:00Z" in ex.json["message"]


def test_click_expired_earn(harness) -> None:
    cid = harness.earn_click("p1")  # click_ttl_hours = 1
    harness.clock.advance(hours=1, microseconds=1)
    ex = harness.post("/api/v1/earn/postback", params={"click_id": cid},
                      json={"amount": 5, "status": "completed", "transactionId": "t"})
    assert_refused(ex, 410, "click_expired")
    assert len(harness.receiver.conversions) == 0


def test_link_click_without_ttl_never_expires(harness) -> None:
    cid = harness.link_click("beta-1")
    harness.clock.advance(days=3650)
    assert harness.get("/postback/key-beta", params={"click_id": cid}).json == RECORDED


@pytest.mark.parametrize("value", ["abc", "-1", "1e12", "NaN", "inf", "1.123456789", "", "1,5", "0x10"])
def test_invalid_amount(harness, value: str) -> None:
    path, params, _ = dialect_setup(harness, "network")
    if value == "":  # an empty amount is the default 0, not an error
        assert send(harness, path, {**params, "amount": value}).fields["amount"] == "0"
        return
    assert_refused(send(harness, path, {**params, "amount": value}), 400, "invalid_amount")
    assert_refused(send(harness, path, {**params, "payout": value}), 400, "invalid_amount")
    assert_refused(send(harness, path, {**params, "commission": value}), 400, "invalid_commission")


@pytest.mark.parametrize("value", [{"v": 1}, [1], "12 USD", -3, 1e20])
def test_invalid_amount_json(harness, value) -> None:
    cid = harness.earn_click()
    ex = harness.post("/api/v1/earn/postback", params={"click_id": cid}, json={"amount": value})
    assert_refused(ex, 400, "invalid_amount")


@pytest.mark.parametrize("value", ["EURO", "E", "1$", "€", "us d"])
def test_invalid_currency(harness, value: str) -> None:
    path, params, _ = dialect_setup(harness, "network")
    assert_refused(send(harness, path, {**params, "currency": value}), 400, "invalid_currency")


@pytest.mark.parametrize("body", [b"{broken", b"[1, 2]", b'"text"'])
def test_invalid_json_body(harness, body: bytes) -> None:
    cid = harness.earn_click()
    ex = harness.post("/api/v1/earn/postback", params={"click_id": cid}, body=body,
                      content_type="application/json")
    assert_refused(ex, 400, "invalid_body")
    assert ex.record["body"] == body.decode()


def test_body_too_large_is_refused_and_logged(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir, settings=Settings(data_dir, max_body_bytes=100, max_logged_body_bytes=40))
    cid = h.link_click("open-1")
    body = urlencode({"cid": cid, "pad": "x" * 200})
    ex = h.post("/postback", body=body, content_type="application/x-www-form-urlencoded")
    assert (ex.status, ex.json["error"]) == (413, "body_too_large")
    assert ex.record["body_truncated"] is True and ex.record["body_bytes"] == len(body)
    assert len(ex.record["body"]) == 40
    assert len(h.receiver.conversions) == 0


def test_refusals_never_count(harness) -> None:
    cid = harness.link_click("alpha-1")
    harness.get("/api/postback", params={"click_id": cid})
    harness.get("/api/postback", params={"click_id": cid, "api_key": "key-beta"})
    harness.get("/api/postback", params={"click_id": cid, "api_key": "key-alpha", "amount": "x"})
    assert len(harness.receiver.conversions) == 0
    assert harness.get("/api/postback", params={"click_id": cid, "api_key": "key-alpha"}).json == RECORDED


# ---------------------------------------------------------------- duplicates


def test_duplicates_by_click_and_transaction(harness) -> None:
    path, params, cid = dialect_setup(harness, "network")
    assert send(harness, path, {**params, "txn": "A"}).json == RECORDED
    assert send(harness, path, {**params, "txn": "A", "amount": "999"}).json == DUPLICATE
    assert send(harness, path, {**params, "txn": "B"}).json == RECORDED  # an upsell
    assert send(harness, path, {**params, "order_id": "B"}).json == DUPLICATE
    assert send(harness, path, params).json == RECORDED  # default transaction id = click id
    assert send(harness, path, {**params, "txn": cid}).json == DUPLICATE
    assert len(harness.receiver.conversions) == 3
    assert harness.get("/healthz").json["conversions"] == 3


def test_same_transaction_on_another_click_is_recorded(harness) -> None:
    one, two = harness.link_click("alpha-1"), harness.link_click("alpha-1")
    for cid in (one, two):
        assert harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid, "txn": "X"}
                           ).json == RECORDED


def test_duplicates_across_dialects(harness) -> None:
    cid = harness.link_click("alpha-1")
    assert harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid, "txn": "T"}
                       ).json == RECORDED
    assert harness.get("/postback/key-alpha", params={"click_id": cid, "transaction_id": "T"}).json == DUPLICATE
    assert harness.get("/postback", params={"cid": cid, "txid": "T", "api_key": "key-alpha"}).json == DUPLICATE


def test_duplicates_survive_a_restart(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir)
    path, params, _ = dialect_setup(h, "network")
    assert send(h, path, params).json == RECORDED
    h.close()
    again = make_harness(data_dir)
    assert send(again, path, params).json == DUPLICATE
    assert send(again, path, {**params, "txn": "new"}).json == RECORDED


# ---------------------------------------------------------------- test postbacks


@pytest.mark.parametrize("path, params", [
    ("/api/postback", {"api_key": "key-alpha", "click_id": "TEST-123"}),
    ("/postback/key-beta", {"click_id": "TEST-123", "payout": "1.00"}),
    ("/postback", {"cid": "TEST-123", "api_key": "key-alpha"}),
    ("/api/postback", {"api_key": "key-alpha"}),  # not even a click id
])
def test_test_postback_with_a_valid_key(harness, path: str, params) -> None:
    ex = harness.get(path, params={**params, "status": "test"})
    assert (ex.status, ex.json) == (200, TEST)
    assert ex.record["result"] == "test" and ex.fields["status"] == "test"
    assert len(harness.receiver.conversions) == 0


def test_test_postback_never_counts(harness) -> None:
    path, params, _ = dialect_setup(harness, "network")
    for status in ("test", "TEST", "Test"):
        assert send(harness, path, {**params, "status": status}).json == TEST
    assert len(harness.receiver.conversions) == 0
    assert send(harness, path, params).json == RECORDED  # the same (click, transaction) is still free


def test_test_postback_with_a_bad_key_is_refused(harness) -> None:
    assert_refused(harness.get("/postback/nope", params={"click_id": "TEST-123", "status": "test"}),
                   403, "invalid_api_key")


def test_test_postback_without_key(harness) -> None:
    # a public partner's click: accepted as a test
    cid = harness.link_click("open-1")
    assert harness.get("/postback", params={"cid": cid, "status": "test"}).json == TEST
    # an unknown click and no key: nothing to test against
    assert_refused(harness.get("/postback", params={"cid": "TEST-123", "status": "test"}), 404, "click_not_found")
    # a key partner's click still needs the key
    alpha = harness.link_click("alpha-1")
    assert_refused(harness.get("/api/postback", params={"click_id": alpha, "status": "test"}), 401,
                   "api_key_required")
    assert len(harness.receiver.conversions) == 0


# ---------------------------------------------------------------- public partners


@pytest.mark.parametrize("dialect", ["peerclick", "advertiser", "earn"])
def test_public_partner_needs_no_key(harness, dialect: str) -> None:
    path, params, _ = dialect_setup(harness, dialect)
    ex = send(harness, path, params)
    assert ex.json == RECORDED
    assert ex.fields["key_present"] is False and ex.fields["partner_id"] == "open"


def test_public_partner_click_on_the_network_route(harness) -> None:
    cid = harness.link_click("open-1")
    assert harness.get("/api/postback", params={"click_id": cid}).json == RECORDED


def test_public_partner_accepts_nothing_but_its_own_offers(harness) -> None:
    cid = harness.link_click("beta-1")  # beta needs its key, even on a public dialect's route
    assert_refused(harness.get("/postback", params={"cid": cid}), 401, "api_key_required")
    assert_refused(harness.get("/postback/advertiser", params={"click_id": cid, "campaign_id": "beta-app"}),
                   401, "api_key_required")


# ---------------------------------------------------------------- unrouted, wrong method, health


@pytest.mark.parametrize("method, path, kwargs, click_id", [
    ("GET", "/postbacks", {"params": {"click_id": "abc"}}, "abc"),
    ("GET", "/api/postback/extra", {"params": {"cid": "c-1"}}, "c-1"),
    ("GET", "/postback/advertiser/x", {"params": {"clickid": "c-2"}}, "c-2"),
    ("POST", "/api/v2/postback", {"json": {"clickId": "c-3", "amount": 1}}, "c-3"),
    ("POST", "/pb", {"body": "click_id=c-4&payout=2", "content_type": "application/x-www-form-urlencoded"}, "c-4"),
    ("GET", "/", {}, None),
    ("GET", "/favicon.ico", {}, None),
])
def test_unrouted_is_404_and_logged(harness, method: str, path: str, kwargs, click_id) -> None:
    ex = harness.request(method, path, **kwargs)
    assert (ex.status, ex.json["ok"], ex.json["error"]) == (404, False, "not_found")
    assert ex.record["kind"] == "unrouted"
    assert ex.record["route"] is None
    assert ex.fields["click_id"] == click_id
    if click_id is not None:
        assert click_id in ex.custom_data.values()


def test_unrouted_postback_is_not_counted(harness) -> None:
    cid = harness.link_click("alpha-1")
    harness.get("/api/postbackz", params={"api_key": "key-alpha", "click_id": cid})
    assert len(harness.receiver.conversions) == 0
    assert harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid}).json == RECORDED


@pytest.mark.parametrize("method, path, route", [
    ("PUT", "/api/postback", "/api/postback"), ("DELETE", "/postback", "/postback"),
    ("PATCH", "/postback/key-alpha", "/postback/{key}"), ("PUT", "/postback/advertiser", "/postback/advertiser"),
    ("DELETE", "/api/v1/earn/postback", "/api/v1/earn/postback"), ("POST", "/healthz", "/healthz"),
])
def test_wrong_method_is_405_and_logged(harness, method: str, path: str, route: str) -> None:
    cid = harness.link_click("alpha-1")
    ex = harness.request(method, path, params={"click_id": cid, "api_key": "key-alpha"})
    assert (ex.status, ex.json["error"]) == (405, "method_not_allowed")
    assert ex.record["route"] == route
    assert ex.record["query"] == f"click_id={cid}&api_key=key-alpha"
    assert "GET" in ex.resp.headers.get("allow", "")
    assert len(harness.receiver.conversions) == 0


@pytest.mark.parametrize("path", ["/healthz", "/api/analytics/postback/test"])
def test_health(harness, path: str) -> None:
    ex = harness.get(path)
    assert ex.status == 200
    assert ex.json["ok"] is True and ex.json["log"] == "writable" and ex.json["config_error"] is None
    assert (ex.record["kind"], ex.record["result"]) == ("health", "ok")


def test_trailing_slash_is_the_same_route(harness) -> None:
    cid = harness.link_click("open-1")
    ex = harness.get("/postback/", params={"cid": cid})
    assert ex.json == RECORDED and ex.record["route"] == "/postback"


def test_seq_and_event_ids_in_the_log(harness) -> None:
    path, params, _ = dialect_setup(harness, "earn")
    send(harness, path, params)
    harness.get("/nowhere")
    records = harness.log.all()
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert len({r["event_id"] for r in records}) == len(records)


def test_clock_is_the_received_time(harness) -> None:
    harness.clock.advance(timedelta(minutes=5, microseconds=42))
    ex = harness.get("/healthz")
    assert ex.record["received_at"] == "2024-01-01T12:05:00.000042Z"


@pytest.mark.parametrize("body, content_type", [
    ('{{"cid": "{cid}", "payout": "2"}}', None),  # JSON without a content type
    ('{{"cid": "{cid}", "payout": "2"}}', "application/json; charset=utf-8"),
    ("cid={cid}&payout=2", None),  # a form without a content type
    ("cid={cid}&payout=2", "application/x-www-form-urlencoded; charset=UTF-8"),
])
def test_body_media_types(harness, body: str, content_type) -> None:
    cid = harness.link_click("open-1")
    ex = harness.post("/postback", body=body.format(cid=cid), content_type=content_type)
    assert ex.json == RECORDED
    assert (ex.fields["click_id"], ex.fields["amount"]) == (cid, "2")


def test_text_body_holding_a_query_string_is_read(harness) -> None:
    """Issue 12 changed this: a text/plain body holding a query string carries its parameters
    (it was ignored, and this postback refused as click_id_required)."""
    cid = harness.link_click("open-1")
    ex = harness.post("/postback", body=f"cid={cid}", content_type="text/plain")
    assert ex.json == RECORDED and ex.fields["click_id"] == cid
    assert ex.record["body"] == f"cid={cid}"  # still logged raw
