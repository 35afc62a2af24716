"""What support tells a partner: every code the receiver answers and every reason
postback_issues gives has a symptom, a likely cause and a fix, and the click_not_found
message points where the click id's shape points.

The codes come from receiver.errors.HTTP_STATUS itself, so a code added there without
advice fails here. The reasons are checked twice: against the module's own lists, and
by running the pipeline over a log in which every code and every other cause occurs.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import pipeline
from pipeline.issues import (
    CLICK_ID_REASONS,
    DETAILS,
    ERROR_REASONS,
    FIX_COLUMNS,
    REASONS,
    REFINED_CODES,
    fix_guide,
    reasons_for_code,
    with_advice,
)
from receiver.contract.codes import HTTP_STATUS
from receiver.contract.params import click_id_shape
from tests.support.ids import uuid_like
from tests.support.log_builder import LogBuilder, cid, make_data_dir
from tests.support.notebooks import run_notebook

GUIDE = {row["reason"]: row for row in fix_guide().iter_rows(named=True)}


def assert_advice(reason: str) -> None:
    assert reason in GUIDE, f"{reason}: no row in pipeline.issues.FIX_GUIDE"
    for column in FIX_COLUMNS:
        assert (GUIDE[reason][column] or "").strip(), f"{reason}: empty {column}"
    assert (DETAILS.get(reason) or "").strip(), f"{reason}: no text in pipeline.issues.DETAILS"


# ---------------------------------------------------------------- the lists


def test_every_code_the_receiver_answers_maps_to_reasons_with_advice() -> None:
    assert not set(ERROR_REASONS) & set(REFINED_CODES)
    assert set(ERROR_REASONS) | set(REFINED_CODES) == set(HTTP_STATUS), "a code without a reason"
    for code in HTTP_STATUS:
        reasons = reasons_for_code(code)
        assert reasons, code
        for reason in reasons:
            assert_advice(reason)


@pytest.mark.parametrize("code", ["invalid_amount", "invalid_body", "invalid_commission", "method_not_allowed",
                                  "link_not_found", "token_required", "invalid_token", "product_not_found",
                                  "invalid_task_url", "bad_request", "body_too_large", "internal_error",
                                  "log_unavailable", "overloaded"])
def test_the_codes_that_had_no_advice_now_have_it(code: str) -> None:
    (reason,) = reasons_for_code(code)
    assert_advice(reason)
    assert code in GUIDE[reason]["symptom"], "the symptom names the code the partner sees"


def test_every_reason_has_exactly_one_guide_row_and_a_detail() -> None:
    reasons = fix_guide()["reason"].to_list()
    assert len(reasons) == len(set(reasons)), "a reason with two guide rows"
    assert set(reasons) == set(REASONS) == set(DETAILS)
    for reason in REASONS:
        assert_advice(reason)


def test_a_code_the_receiver_never_answers_is_an_error() -> None:
    with pytest.raises(ValueError, match="'no_such_code' is not a code the receiver answers"):
        reasons_for_code("no_such_code")


def test_a_reason_without_a_guide_row_reads_as_such_not_as_null() -> None:
    seen = pl.DataFrame({"reason": ["duplicate", "from_a_newer_receiver"], "issues": [3, 1]})
    table = with_advice(seen)
    assert table.select(FIX_COLUMNS).null_count().sum_horizontal().item() == 0
    unknown = table.row(1, named=True)
    assert unknown["symptom"] == "Answered from_a_newer_receiver"
    assert "does not know" in unknown["likely_cause"] and "click story" in unknown["fix"]
    assert table.row(0, named=True)["fix"] == GUIDE["duplicate"]["fix"]


# ---------------------------------------------------------------- what build_issues really gives


def every_cause_log(data: Path) -> None:
    """A log with a postback refused with every code the receiver has, each click id shape,
    both wrong keys, the duplicate and status steps, the counting reasons, a test, a wrong
    path and a record with no answer at all."""
    b = LogBuilder()
    for n in range(1, 8):
        b.click(cid(n))
    b.click(cid(8), offer_id="peer-app")
    b.click(cid(9), percent=None, fixed=None)
    for code in HTTP_STATUS:
        b.postback(cid(1), error=code, http_status=HTTP_STATUS[code])
    b.postback("{click_id}", error="click_not_found")
    b.postback("3d00b232", error="click_not_found")
    b.postback(uuid_like(999, "ffffffff"), error="click_not_found")
    b.postback(cid(1), error="invalid_api_key", key_partner_id="moustache")
    b.postback(cid(2), transaction_id="t2", amount="10")
    b.postback(cid(2), transaction_id="t2", amount="10", result="duplicate")
    b.postback(cid(2), transaction_id="t2", amount="99", result="duplicate")
    b.postback(cid(3), transaction_id="t3", status="pending")
    b.postback(cid(3), transaction_id="t3", status="approved", result="duplicate")
    b.postback(cid(8), transaction_id="t8", status="rejected", currency="EUR")
    b.postback(cid(8), transaction_id="t8", status="approved", result="duplicate")
    b.postback(cid(4), transaction_id="t4", amount="5", currency="BRL")
    b.postback(cid(5), status="test", result="test")
    b.postback(cid(9), transaction_id="t9")
    b.postback("ffffffff-0000-4000-8000-000000000123", transaction_id="tx")  # recorded, click not in the log
    b.unrouted("/postback-old", cid(6))
    # issue 12: an amount under a name not read, a parameter repeated with other values, a macro
    # in a recorded postback's transaction id, a request the HTTP server refused
    b.postback(cid(6), transaction_id="t6", custom_data={"sum": "3.50"})
    repeated = b.postback(cid(6), transaction_id="t6r", custom_data={"sub": ["a", "b"]})
    repeated["fields"]["repeated_params"] = '["sub"]'
    b.postback(cid(6), transaction_id="{txid}")
    refused = b._base("http_error", None, "", "", None)
    refused.update(error="invalid_request_line", http_status=400, fields={
        "server_reason": "Bad URI", "request_line": "GET /api/postback?x=\\xff HTTP/1.1", "headers": "\r\n",
        "head_truncated": False, "click_id": None})
    b.add(refused)
    unanswered = b.postback(cid(7), transaction_id="t7")
    unanswered.update(result=None, http_status=200)
    b.write(data)


def test_every_reason_the_pipeline_gives_has_advice(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "data")
    every_cause_log(data)
    pipeline.run(data)
    issues = pipeline.load(data).postback_issues
    seen = set(issues["reason"])
    # what was sent: each code (click_not_found and invalid_api_key refined), and the rest
    expected = {r for code in HTTP_STATUS for r in reasons_for_code(code)} | {
        "duplicate", "conflicting_duplicate", "status_is_final", "status_change_not_allowed", "fx_missing",
        "click_unknown", "no_offer_terms", "test_postback", "unanswered", "amount_not_recognised",
        "repeated_parameter"}
    assert expected <= seen, expected - seen
    assert set(issues["kind"]) == {"postback", "unrouted", "http_error"}
    assert seen <= set(REASONS), seen - set(REASONS)
    for reason in seen:
        assert_advice(reason)
    generic = issues.filter(pl.col("detail").str.starts_with("Refused with "))
    assert generic.is_empty(), generic.select("reason", "error", "detail")
    table = with_advice(issues.group_by("reason").len())
    assert table.select(FIX_COLUMNS).null_count().sum_horizontal().item() == 0
    assert set(table["symptom"]).isdisjoint({f"Answered {r}" for r in seen}), "a reason fell back"


# ---------------------------------------------------------------- the receiver's click_not_found message


def refused_not_found(harness, click_id: str) -> str:
    ex = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": click_id, "amount": "2"})
    assert (ex.status, ex.json["error"], ex.record["error"]) == (404, "click_not_found", "click_not_found")
    return ex.json["message"]


def test_a_well_formed_click_id_we_never_issued_is_not_told_to_check_a_macro(harness) -> None:
    harness.link_click("alpha-1")
    sent = uuid_like(4242, "abcdef01")
    assert click_id_shape(sent) == "uuid"
    message = refused_not_found(harness, sent)
    assert "macro" not in message
    assert "well-formed click id" in message and "not one we issued" in message
    assert "not made through our tracking link" in message and "another network or environment" in message
    assert "send the click_id our redirect gave" in message


@pytest.mark.parametrize("sent", ["{click_id}", "%7Bclickid%7D", "[cid]", "${sub1}", "#clickid#"])
def test_an_unfilled_macro_is_told_to_fix_the_macro(harness, sent: str) -> None:
    assert click_id_shape(sent) == "macro"
    message = refused_not_found(harness, sent)
    assert f"{sent!r} is a macro your tracker sent unfilled" in message
    assert "use the macro your platform documents" in message


@pytest.mark.parametrize("sent", ["3d00b232", "00000000-0000-4000-8000-00000000000", "click 12", "x" * 80])
def test_a_malformed_click_id_is_told_to_send_ours_unchanged(harness, sent: str) -> None:
    assert click_id_shape(sent) == "malformed"
    message = refused_not_found(harness, sent)
    assert f"{sent[:40]!r} is not a click id we issue (ours are UUIDs)" in message
    assert "macro" not in message and "unchanged" in message


def test_the_pipeline_reason_agrees_with_the_receiver_message(harness) -> None:
    cid_ = harness.link_click("alpha-1")
    for sent in ("{click_id}", cid_[:20], uuid_like(7, "abcdef01")):
        refused_not_found(harness, sent)
    (harness.data_dir / "fx_rates.csv").write_text("date,currency,rate\n2024-01-01,EUR,1.1\n", encoding="utf-8")
    pipeline.run(harness.data_dir)
    issues = pipeline.load(harness.data_dir).postback_issues
    assert issues.select("click_id", "reason").rows() == [
        ("{click_id}", "unsubstituted_macro"), (cid_[:20], "malformed_click_id"),
        (uuid_like(7, "abcdef01"), "unknown_click_id")]
    assert set(CLICK_ID_REASONS.values()) >= set(issues["reason"])
    assert "check the macro" not in GUIDE["unknown_click_id"]["fix"]
    assert "never issued" in GUIDE["unknown_click_id"]["likely_cause"]
    assert "never issued" in issues.filter(pl.col("reason") == "unknown_click_id")["detail"][0]


# ---------------------------------------------------------------- the notebook


def test_the_notebook_tells_the_partner_something_for_every_reason(harness) -> None:
    """Requests the demo does not send, through the real receiver, then the notebook as a script."""
    h = harness
    cid_ = h.link_click("alpha-1")
    ok = {"api_key": "key-alpha", "click_id": cid_}
    assert h.get("/api/postback", params={**ok, "amount": "12 USD"}).json["error"] == "invalid_amount"
    assert h.get("/api/postback", params={**ok, "commission": "1,5"}).json["error"] == "invalid_commission"
    assert h.post("/api/postback", params=ok, body=b"{broken", content_type="application/json"
                  ).json["error"] == "invalid_body"
    assert h.request("PUT", "/api/postback", params=ok).json["error"] == "method_not_allowed"
    assert h.get("/api/postback", params={**ok, "click_id": uuid_like(99, "abcdef01")}).status == 404
    assert h.get("/api/postback", params={**ok, "transaction_id": "o-1", "amount": "3"}).json["result"] == "recorded"
    (h.data_dir / "fx_rates.csv").write_text("date,currency,rate\n2024-01-01,EUR,1.1\n", encoding="utf-8")
    pipeline.run(h.data_dir)

    _, defs = run_notebook("troubleshooting", h.data_dir, "--data", str(h.data_dir))
    table = defs["table"]
    assert {"invalid_amount", "invalid_commission", "invalid_body", "method_not_allowed",
            "unknown_click_id"} <= set(table["reason"])
    assert table.select(FIX_COLUMNS).null_count().sum_horizontal().item() == 0, table
    for row in table.iter_rows(named=True):
        assert [row[c] for c in FIX_COLUMNS] == [GUIDE[row["reason"]][c] for c in FIX_COLUMNS], row["reason"]
    issues = defs["issues"]
    issues = issues.collect() if isinstance(issues, pl.LazyFrame) else issues  # scanned lazily (issue 13)
    assert table["issues"].sum() == issues.height
