"""Golden tests: small hand-written logs, one rule each, exact expected rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import polars as pl
import pytest

import pipeline
from pipeline.errors import PipelineConsistencyError
from tests.support.log_builder import T0, LogBuilder, cid, make_data_dir


def derive(tmp_path, builder: LogBuilder, **kwargs):
    data = tmp_path / "data"
    if not (data / "config.toml").exists():
        make_data_dir(data, **kwargs)
    builder.write(data)
    tables, summary = pipeline.derive(data, use_cache=False)
    return tables, summary


def conv(tables, click_id, transaction_id=None) -> dict:
    rows = tables["conversions"].filter(
        (pl.col("click_id") == click_id) & (pl.col("transaction_id") == (transaction_id or click_id)))
    assert rows.height == 1
    return rows.row(0, named=True)


# ---------------------------------------------------------------- status vocabulary

STATUS_CASES = [
    ("confirmed", "approved"), ("approved", "approved"), ("paid", "approved"), ("completed", "approved"),
    ("success", "approved"), ("1", "approved"), ("pending", "pending"), ("hold", "pending"),
    ("on_hold", "pending"), ("rejected", "rejected"), ("declined", "rejected"), ("reversed", "rejected"),
    ("chargeback", "rejected"), ("refunded", "rejected"), ("fraud", "rejected"), ("weird", "rejected"),
    (None, "approved"), ("APPROVED", "approved"),
]


def test_status_vocabulary_and_missing_status_means_approved(tmp_path):
    b = LogBuilder()
    for i, (raw, _) in enumerate(STATUS_CASES, start=1):
        b.click(cid(i))
        b.postback(cid(i), status=raw, amount="10")
    tables, _ = derive(tmp_path, b)
    for i, (raw, expected) in enumerate(STATUS_CASES, start=1):
        row = conv(tables, cid(i))
        assert (row["status"], row["status_raw"]) == (expected, raw), raw
        assert row["counts"] is (expected == "approved"), raw
        assert row["not_counted_reason"] == (None if expected == "approved" else expected)
    weird = tables["postbacks"].filter(pl.col("status_raw") == "weird").row(0, named=True)
    assert weird["status"] == "rejected"


# ---------------------------------------------------------------- dedup

def test_dedup_on_click_and_transaction_with_default_transaction_id(tmp_path):
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10")  # transaction_id defaults to the click id
    b.postback(cid(1), result="duplicate")  # no amount sent: a plain duplicate
    b.postback(cid(1), amount="5", transaction_id="upsell-1")  # a second conversion of the click
    b.postback(cid(1), amount="5", transaction_id="upsell-1", result="duplicate")
    b.postback(cid(1), amount="5", transaction_id="upsell-1", result="duplicate")
    tables, summary = derive(tmp_path, b)
    conversions = tables["conversions"]
    assert conversions.select("click_id", "transaction_id", "amount", "duplicates").rows() == [
        (cid(1), cid(1), D("10"), 1), (cid(1), "upsell-1", D("5"), 2)]
    assert summary.results == {"recorded": 2, "duplicate": 3}
    issues = tables["postback_issues"]
    assert issues["reason"].to_list() == ["duplicate"] * 3
    assert conversions["conflicting_duplicates"].to_list() == [0, 0]


def test_a_reused_transaction_id_with_other_values_is_a_conflicting_duplicate(tmp_path):
    """Guarantee 7: a different amount, currency or commission is flagged, never merged."""
    b = LogBuilder()
    b.click(cid(1))  # acme: status_updates = false, USD
    b.postback(cid(1), amount="10.00", transaction_id="t-1")  # seq 2: recorded
    b.postback(cid(1), amount="12.50", transaction_id="t-1", result="duplicate")  # other amount
    b.postback(cid(1), amount="10", transaction_id="t-1", result="duplicate")  # the same amount, as 10
    b.postback(cid(1), transaction_id="t-1", result="duplicate")  # no amount sent: nothing to compare
    b.postback(cid(1), amount="10", currency="EUR", transaction_id="t-1", result="duplicate")  # other currency
    b.postback(cid(1), amount="10", commission="3", transaction_id="t-1", result="duplicate")  # a commission
    zero = b.postback(cid(1), transaction_id="t-1", result="duplicate")  # amount=0 sent explicitly
    zero["query"] = f"click_id={cid(1)}&transaction_id=t-1&amount=0"
    tables, summary = derive(tmp_path, b)
    row = conv(tables, cid(1), "t-1")
    assert (row["amount"], row["currency"], row["commission"], row["status"]) == (D("10"), "USD", D("0"), "approved")
    assert (row["duplicates"], row["conflicting_duplicates"]) == (6, 4)
    issues = tables["postback_issues"]
    assert issues.select("seq", "reason").rows() == [
        (3, "conflicting_duplicate"), (4, "duplicate"), (5, "duplicate"), (6, "conflicting_duplicate"),
        (7, "conflicting_duplicate"), (8, "conflicting_duplicate")]
    details = dict(issues.select("seq", "detail").rows())
    assert "recorded 10.00 USD at seq 2, this one says 12.50 USD;" in details[3]
    assert "recorded 10.00 USD at seq 2, this one says 10.00 EUR;" in details[6]
    assert "recorded 10.00 USD (commission 0.00) at seq 2, this one says 10.00 USD (commission 3.00);" in details[7]
    assert "recorded 10.00 USD at seq 2, this one says 0.00 USD;" in details[8]
    assert summary.issues["conflicting_duplicate"] == 4
    sent = dict(tables["postbacks"].select("seq", "amount_sent").rows())
    assert [sent[s] for s in (2, 3, 5, 8)] == [True, True, False, True]


def test_a_status_update_with_another_amount_is_applied_and_still_conflicting(tmp_path):
    b = LogBuilder()
    b.click(cid(1), offer_id="moustache-survey")  # moustache: status_updates = true
    b.postback(cid(1), status="pending", amount="20", dialect="publisher")
    b.postback(cid(1), status="approved", amount="20", result="duplicate", dialect="publisher")  # an update
    b.postback(cid(1), status="reversed", amount="25", result="duplicate", dialect="publisher")  # conflicting
    b.postback(cid(1), status="rejected", amount="25", result="duplicate", dialect="publisher")  # no-op, conflicting
    tables, _ = derive(tmp_path, b)
    row = conv(tables, cid(1))
    assert (row["status"], row["status_history"], row["amount"]) == ("rejected", ["pending", "approved", "rejected"],
                                                                     D("20"))
    assert (row["duplicates"], row["updates_applied"], row["conflicting_duplicates"]) == (3, 2, 2)
    issues = tables["postback_issues"].select("seq", "reason", "detail").rows()
    assert [(s, r) for s, r, _ in issues] == [(4, "conflicting_duplicate"), (5, "conflicting_duplicate")]
    assert issues[0][2].endswith("Its status step (rejected) was applied.")
    assert "recorded 20.00 USD at seq 2, this one says 25.00 USD" in issues[1][2]


def test_an_earn_json_body_with_amount_zero_is_an_amount_sent(tmp_path):
    b = LogBuilder()
    b.click(cid(1), offer_id="taskwall-tasks", user_id="u1", product_id="task-1")
    b.postback(cid(1), amount="8", status="completed", dialect="earn", transaction_id="t")
    dup = b.postback(cid(1), status="completed", dialect="earn", transaction_id="t", result="duplicate")
    dup.update(body='{"amount": 0, "status": "completed", "transactionId": "t"}', content_type="application/json",
               query=f"click_id={cid(1)}")
    bare = b.postback(cid(1), status="completed", dialect="earn", transaction_id="t", result="duplicate")
    bare.update(body='{"status": "completed", "transactionId": "t"}', content_type="application/json")
    tables, _ = derive(tmp_path, b)
    assert tables["postbacks"]["amount_sent"].to_list() == [True, True, False]
    assert tables["postback_issues"].select("seq", "reason").rows() == [
        (3, "conflicting_duplicate"), (4, "duplicate")]


def test_status_is_final_at_first_insert_without_status_updates(tmp_path):
    """Seed 003: re-posting a pending conversion as confirmed is ignored."""
    b = LogBuilder()
    b.click(cid(1))  # acme: status_updates = false
    b.postback(cid(1), status="pending", amount="100")
    b.postback(cid(1), status="confirmed", amount="100", result="duplicate")
    tables, _ = derive(tmp_path, b)
    row = conv(tables, cid(1))
    assert (row["status"], row["status_history"], row["duplicates"], row["updates_applied"]) == (
        "pending", ["pending"], 1, 0)
    assert row["counts"] is False
    assert tables["postback_issues"]["reason"].to_list() == ["status_is_final"]


def test_status_updates_move_forward_only_and_keep_history(tmp_path):
    b = LogBuilder()
    b.click(cid(1), offer_id="moustache-survey")  # moustache: status_updates = true
    b.postback(cid(1), status="pending", amount="20", dialect="publisher")
    b.postback(cid(1), status="pending", result="duplicate", dialect="publisher")  # same status: duplicate
    b.postback(cid(1), status="approved", result="duplicate", dialect="publisher")  # applied
    b.postback(cid(1), status="pending", result="duplicate", dialect="publisher")  # backwards: ignored
    b.postback(cid(1), status="chargeback", result="duplicate", dialect="publisher")  # reversal: applied
    b.postback(cid(1), status="approved", result="duplicate", dialect="publisher")  # rejected is final
    tables, _ = derive(tmp_path, b)
    row = conv(tables, cid(1))
    assert row["status"] == "rejected"
    assert row["status_raw"] == "chargeback"
    assert row["status_history"] == ["pending", "approved", "rejected"]
    assert (row["duplicates"], row["updates_applied"]) == (5, 2)
    assert row["last_seq"] == 6
    assert row["status_updated_at"] == T0 + timedelta(seconds=6)
    reasons = tables["postback_issues"].select("seq", "reason").rows()
    assert reasons == [(3, "duplicate"), (5, "status_change_not_allowed"), (7, "status_change_not_allowed")]


# ---------------------------------------------------------------- money

def test_revenue_share_commission_percent_and_fixed(tmp_path):
    b = LogBuilder()
    b.click(cid(1))  # acme-shop: 70 %, USD
    b.postback(cid(1), amount="100")
    b.click(cid(2))
    b.postback(cid(2), amount="100", commission="12.5")  # a sent commission wins
    b.click(cid(3), offer_id="moustache-survey")  # fixed 1.5 in the offer's currency (USD)
    b.postback(cid(3), amount="10", currency="EUR", dialect="publisher")
    b.click(cid(4), offer_id="peer-app", affiliate_id="aff3")  # 60 %, EUR offer
    b.postback(cid(4), amount="10", dialect="peerclick")  # no currency: the offer's (EUR)
    b.click(cid(5))
    b.postback(cid(5), amount="0.00000005")  # 70 % = 0.000000035 -> half-even to 8 places
    tables, _ = derive(tmp_path, b)
    got = {r["click_id"]: r for r in tables["conversions"].iter_rows(named=True)}
    assert (got[cid(1)]["affiliate_payout"], got[cid(1)]["affiliate_payout_source"],
            got[cid(1)]["affiliate_payout_base"]) == (D("70"), "percent", D("70"))
    assert (got[cid(2)]["affiliate_payout"], got[cid(2)]["affiliate_payout_source"]) == (D("12.5"), "commission")
    assert got[cid(3)]["currency"] == "EUR"
    assert got[cid(3)]["amount_base"] == D("12")  # 10 EUR x 1.2
    assert (got[cid(3)]["affiliate_payout"], got[cid(3)]["affiliate_payout_currency"],
            got[cid(3)]["affiliate_payout_base"]) == (D("1.5"), "USD", D("1.5"))
    assert (got[cid(4)]["currency"], got[cid(4)]["fx_rate"], got[cid(4)]["amount_base"]) == ("EUR", D("1.2"), D("12"))
    assert (got[cid(4)]["affiliate_payout"], got[cid(4)]["affiliate_payout_base"]) == (D("6"), D("7.2"))
    assert got[cid(5)]["affiliate_payout"] == D("0.00000004")  # 0.000000035 rounds half to even


def test_currency_rates_as_of_the_utc_day_and_fx_missing(tmp_path):
    b = LogBuilder()
    for i in range(1, 5):
        b.click(cid(i), offer_id="peer-app", affiliate_id="aff3", at=T0 - timedelta(days=90))
    b.postback(cid(1), amount="10", dialect="peerclick", at=T0)  # 2024-05-01: that day's rate 1.2
    b.postback(cid(2), amount="10", dialect="peerclick", at=T0 - timedelta(days=16))  # 04-15: 04-01's 1.1
    b.postback(cid(3), amount="10", dialect="peerclick", at=T0 - timedelta(days=61))  # 03-01: no rate yet
    b.postback(cid(4), amount="10", currency="BRL", dialect="peerclick", at=T0)  # never a rate
    tables, _ = derive(tmp_path, b)
    rows = tables["conversions"].sort("click_id").select(
        "click_id", "fx_rate", "fx_date", "amount_base", "counts", "not_counted_reason").rows()
    assert rows == [
        (cid(1), D("1.2"), T0.date(), D("12"), True, None),
        (cid(2), D("1.1"), T0.date().replace(month=4, day=1), D("11"), True, None),
        (cid(3), None, None, None, False, "fx_missing"),
        (cid(4), None, None, None, False, "fx_missing"),
    ]
    issues = tables["postback_issues"].filter(pl.col("reason") == "fx_missing")
    assert sorted(issues["click_id"].to_list()) == [cid(3), cid(4)]
    assert set(issues["result"].to_list()) == {"recorded"}


def test_counts_needs_a_known_unexpired_click(tmp_path):
    b = LogBuilder()
    b.click(cid(1), ttl_hours=1)
    b.postback(cid(1), amount="10", at=T0 + timedelta(minutes=30))  # in time
    b.click(cid(2), ttl_hours=1, at=T0)
    b.postback(cid(2), amount="10", at=T0 + timedelta(hours=2))  # after expiry (hand-written)
    b.postback(cid(9), amount="10", at=T0 + timedelta(hours=3))  # its click is not in the log
    tables, _ = derive(tmp_path, b)
    rows = tables["conversions"].sort("click_id").select("click_id", "counts", "not_counted_reason").rows()
    assert rows == [(cid(1), True, None), (cid(2), False, "click_expired"), (cid(9), False, "click_unknown")]


def test_earnings_per_day_partner_offer_and_payee(tmp_path):
    b = LogBuilder()
    b.click(cid(1), affiliate_id="aff1")
    b.postback(cid(1), amount="100")
    b.click(cid(2), affiliate_id="aff1")
    b.postback(cid(2), amount="50", status="pending")
    b.click(cid(3), affiliate_id="aff1")
    b.postback(cid(3), amount="30", status="declined")
    b.click(cid(4), affiliate_id="aff2")
    b.postback(cid(4), amount="10")
    b.click(cid(5), offer_id="taskwall-tasks", user_id="u1", product_id="task-1", ttl_hours=24)
    b.postback(cid(5), amount="8", status="completed", dialect="earn")
    b.click(cid(6), affiliate_id="aff1")
    b.postback(cid(6), amount="40", at=T0 + timedelta(days=1))  # the next UTC day
    tables, _ = derive(tmp_path, b)
    got = tables["earnings"].select(
        pl.col("day").cast(pl.String), "partner_id", "offer_id", "affiliate_id", "user_id", "counted",
        "amount_base", "affiliate_payout_base", "margin_base", "pending", "rejected").rows()
    assert got == [
        ("2024-05-01", "acme", "acme-shop", "aff1", None, 1, D("100"), D("70"), D("30"), 1, 1),
        ("2024-05-01", "acme", "acme-shop", "aff2", None, 1, D("10"), D("7"), D("3"), 0, 0),
        ("2024-05-01", "taskwall", "taskwall-tasks", None, "u1", 1, D("8"), D("4"), D("4"), 0, 0),
        ("2024-05-02", "acme", "acme-shop", "aff1", None, 1, D("40"), D("28"), D("12"), 0, 0),
    ]


# ---------------------------------------------------------------- postback issues

def test_issue_reasons_for_support(tmp_path):
    b = LogBuilder()
    b.click(cid(1))
    b.click(cid(2), ttl_hours=1)
    b.click(cid(3), offer_id="cw-1001", affiliate_id="aff2")
    cases = [
        (dict(click_id=None, error="click_id_required"), "empty_click_id", None),
        (dict(click_id="{click_id}", error="click_not_found"), "unsubstituted_macro", None),
        (dict(click_id="%7Bclick_id%7D", error="click_not_found"), "unsubstituted_macro", None),
        (dict(click_id="[click_id]", error="click_not_found"), "unsubstituted_macro", None),
        (dict(click_id="${click_id}", error="click_not_found"), "unsubstituted_macro", None),
        (dict(click_id="#click_id#", error="click_not_found"), "unsubstituted_macro", None),
        (dict(click_id=cid(1)[-20:], error="click_not_found"), "malformed_click_id", cid(1)),  # truncated
        (dict(click_id=cid(1)[:20], error="click_not_found"), "malformed_click_id", None),  # fits several
        (dict(click_id="clk_xxx", error="click_not_found"), "malformed_click_id", None),
        (dict(click_id=cid(1).replace("4000", "4001"), error="click_not_found"), "unknown_click_id", cid(1)),
        (dict(click_id="12345678-aaaa-4bbb-8ccc-123456789abc", error="click_not_found"), "unknown_click_id", None),
        (dict(click_id=cid(2), error="click_expired"), "click_expired", None),
        (dict(click_id=cid(1), error="invalid_api_key", key_partner_id="moustache"), "key_of_another_partner", None),
        (dict(click_id=cid(1), error="invalid_api_key"), "wrong_api_key", None),
        (dict(click_id=cid(1), error="api_key_required"), "missing_api_key", None),
        (dict(click_id=cid(3), error="campaign_mismatch", dialect="advertiser", campaign_id="cw-9"),
         "campaign_mismatch", None),
        (dict(click_id=cid(3), error="campaign_id_required", dialect="advertiser"), "missing_campaign_id", None),
        (dict(click_id=cid(1), result="test", status="test"), "test_postback", None),
        # the receiver's authentication refusals
        (dict(click_id=cid(1), error="ip_not_allowed", http_status=403), "ip_not_allowed", None),
        (dict(click_id=cid(1), error="signature_required", http_status=401), "signature_required", None),
        (dict(click_id=cid(1), error="invalid_signature", http_status=403), "invalid_signature", None),
        (dict(click_id=cid(1), error="signature_expired", http_status=403), "signature_expired", None),
    ]
    for kwargs, _, _ in cases:
        click_id = kwargs.pop("click_id")
        b.postback(click_id, **kwargs)
    b.unrouted("/postbak", cid(1))
    tables, _ = derive(tmp_path, b)
    issues = tables["postback_issues"]
    assert issues.select("reason", "nearest_click_id").rows() == [
        (reason, nearest) for _, reason, nearest in cases] + [("wrong_path", None)]
    assert issues["detail"].null_count() == 0
    assert issues.filter(pl.col("reason") == "unknown_click_id")["detail"][0].endswith(f"Did you mean {cid(1)}?")
    auth = dict(issues.filter(pl.col("reason").is_in(
        ["ip_not_allowed", "signature_required", "invalid_signature", "signature_expired"]))
        .select("reason", "detail").rows())
    assert auth["ip_not_allowed"].startswith("Refused: the sender's address is not in the partner's allowed_ips")
    assert auth["ip_not_allowed"].endswith(" Sent from 203.0.113.7.")
    assert "no X-Signature" in auth["signature_required"] and "Sent from 203.0.113.7." in auth["signature_required"]
    assert "wrong or old signing_secret" in auth["invalid_signature"]
    assert "clock" in auth["signature_expired"]
    assert issues.filter(pl.col("reason") == "ip_not_allowed")["http_status"].to_list() == [403]
    wrong_path = issues.row(-1, named=True)
    assert (wrong_path["kind"], wrong_path["path"], wrong_path["click_id"]) == ("unrouted", "/postbak", cid(1))
    # no key and no partner in the path: the click's partner is the one to tell
    assert wrong_path["partner_id"] == tables["clicks"].filter(pl.col("click_id") == cid(1))["partner_id"][0]
    assert wrong_path["partner_id"] is not None
    assert tables["conversions"].is_empty()


# ---------------------------------------------------------------- consistency

@pytest.mark.parametrize("case", ["orphan_duplicate", "two_recorded", "duplicate_first"])
def test_disagreeing_answers_fail_loudly_naming_the_events(tmp_path, case):
    b = LogBuilder()
    b.click(cid(1))
    if case == "orphan_duplicate":
        bad = [b.postback(cid(1), result="duplicate")]
    elif case == "two_recorded":
        b.postback(cid(1))
        bad = [b.postback(cid(1))]
    else:
        bad = [b.postback(cid(1), result="duplicate")]
        b.postback(cid(1))
    data = make_data_dir(tmp_path / "data")
    b.write(data)
    with pytest.raises(PipelineConsistencyError) as err:
        pipeline.run(data)
    assert [e.event_id for e in err.value.events] == [r["event_id"] for r in bad]
    assert bad[0]["event_id"] in str(err.value)
    assert "segment-00000001.ndjson line" in str(err.value)
    assert not (data / "warehouse" / "conversions.parquet").exists()


def test_every_recorded_answer_is_one_conversion(tmp_path):
    b = LogBuilder()
    for i in range(1, 6):
        b.click(cid(i))
        b.postback(cid(i), amount=str(i))
        b.postback(cid(i), result="duplicate")
    tables, summary = derive(tmp_path, b)
    assert tables["conversions"].height == summary.results["recorded"] == 5
    assert tables["conversions"]["duplicates"].sum() == summary.results["duplicate"] == 5


# ---------------------------------------------------------------- clicks and postbacks tables

def test_clicks_and_postbacks_tables(tmp_path):
    b = LogBuilder()
    b.click(cid(1), custom_data={"sub2": "b", "sub1": "a"}, ttl_hours=720)
    b.click(cid(2), offer_id="taskwall-tasks", user_id="u2", product_id="task-2", ttl_hours=24, snapshot=False)
    b.postback(cid(1), amount="12.50", status="paid", transaction_id="o-1", custom_data={"param1": "x"})
    b.postback(None, error="click_id_required")
    tables, _ = derive(tmp_path, b)
    clicks = tables["clicks"]
    first = clicks.row(0, named=True)
    assert (first["source"], first["slug"], first["affiliate_id"], first["ip"], first["custom_data"],
            first["terms_source"], first["revenue_share_percent"]) == (
        "link", "slug", "aff1", "203.0.113.7", '{"sub1":"a","sub2":"b"}', "snapshot", D("70"))
    assert first["expires_at"] - first["clicked_at"] == timedelta(hours=720)
    earn = clicks.row(1, named=True)
    # no snapshot in the record: offer terms from the current config
    assert (earn["source"], earn["user_id"], earn["product_id"], earn["terms_source"],
            earn["revenue_share_percent"], earn["offer_currency"]) == ("earn", "u2", "task-2", "config", D("50"),
                                                                        "USD")
    pb = tables["postbacks"].select("click_id", "transaction_id", "status_raw", "status", "amount", "currency",
                                    "custom_data", "http_status", "result").rows()
    assert pb == [(cid(1), "o-1", "paid", "approved", D("12.5"), "USD", '{"param1":"x"}', 200, "recorded"),
                  (None, None, None, "approved", None, None, "{}", 400, "click_id_required")]


def test_a_postback_without_currency_of_an_offer_without_one_is_usd(tmp_path):
    b = LogBuilder()
    b.click(cid(1), offer_currency=None)
    b.clicks[cid(1)]["offer_currency"] = None
    b.records[-1]["fields"]["offer_currency"] = None
    rec = b.postback(cid(1), amount="10")
    rec["fields"]["currency"] = rec["fields"]["currency_source"] = None
    tables, _ = derive(tmp_path, b)
    row = conv(tables, cid(1))
    assert (row["currency"], row["amount_base"], row["counts"]) == ("USD", D("10"), True)


def test_unusable_fx_files_are_explained(tmp_path):
    b = LogBuilder()
    b.click(cid(1))
    with pytest.raises(pipeline.FxRatesError, match="line 3: date='2024-13-01'"):
        derive(tmp_path, b, fx="date,currency,rate\n2024-04-01,EUR,1.1\n2024-13-01,EUR,1.2\n")
    (tmp_path / "data" / "fx_rates.csv").write_text("day,cur,rate\n", encoding="utf-8")
    with pytest.raises(pipeline.FxRatesError, match="missing column\\(s\\) date, currency"):
        derive(tmp_path, b)
    (tmp_path / "data" / "fx_rates.csv").write_text("date,currency,rate\n2024-04-01,EUR,1\n2024-04-01,EUR,2\n")
    with pytest.raises(pipeline.FxRatesError, match="more than one rate for the same day"):
        derive(tmp_path, b)


def test_the_notebook_api(tmp_path):
    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10")
    b.write(data)
    summary = pipeline.run(data)
    assert isinstance(summary.warehouse, pipeline.Warehouse)
    wh = pipeline.load(data)
    assert set(wh.tables) == {"clicks", "postbacks", "conversions", "earnings", "postback_issues",
                              "wallet_credits", "wallet_balances", "fx_rates", "deliveries", "delivery_attempts"}
    joined = wh.sql("""
        select c.click_id, k.slug, c.amount_base
        from conversions c join clicks k using (click_id);
    """)
    assert joined.rows() == [(cid(1), "slug", D("10"))]
    assert joined.schema["amount_base"] == pl.Decimal(38, 8)
    in_memory = pipeline.Warehouse(pipeline.derive(data)[0])
    assert in_memory.sql("select count(*) as n from postbacks")["n"].to_list() == [1]
    assert {"load", "run", "credit", "reconcile", "Warehouse", "PipelineError"} <= set(pipeline.__all__)
