"""Every shipped preset with its platform's documented postback, sent to the partner's own
`/postback/{key}` URL: the answer, and the conversion the pipeline derives from the log (status,
amount, currency, transaction id, status history), reversals included.

Each case cites the documentation page its parameter names and values come from (the preset file
in receiver/contract/presets/ quotes it). Keitaro, Tapjoy, ironSource, ayeT and BitLabs, whose
answers and signatures need more than a table row, have their own tests in
test_receiver_profiles.py (TESTED_THERE); this module checks that together they cover every preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pipeline
from receiver.contract.profiles import preset_names
from tests.support.harness import Harness
from tests.support.profiles import FX_RATES, PRESET_PARTNERS, PRESETS_CONFIG, cpx_hash

CLICK = "<click>"  # stands for the click id of the case's click in a step's parameters

# Presets whose documented postbacks are tested in test_receiver_profiles.py (each by name there).
TESTED_THERE = {"keitaro": "test_keitaro_sale_in_keitaros_own_format",
                "tapjoy": "test_tapjoy_callback_answered_200_and_booked",
                "ironsource": "test_ironsource_is_answered_its_event_id_ok",
                "ayet": "test_ayet_conversion_then_its_chargeback",
                "bitlabs": "test_bitlabs_complete_then_reconciliation_reverses_it"}


@dataclass(frozen=True)
class Case:
    """One platform's documented postbacks, in order, and the conversion they must derive."""

    partner: str
    doc: str
    steps: tuple[dict[str, str], ...]
    results: tuple[str, ...]  # the answer's "result" of each step
    transaction_id: str  # CLICK when the platform sends none (the click id is the transaction)
    status: str
    amount: str
    currency: str
    history: tuple[str, ...]

    @property
    def preset(self) -> str:
        return PRESET_PARTNERS[self.partner][0]

    @property
    def key(self) -> str:
        return PRESET_PARTNERS[self.partner][1]


CPX_TX = "b3a3b0e6-cpx-1"
ADGATE_CONVERSION = "4d63afe33875ceeec17dd7eab41b8590a"

CASES = [
    Case("voluum-trk", "https://doc.voluum.com/en/tracking_conversions_postback.html",
         ({"cid": CLICK, "payout": "4.20", "txid": "V-1", "currency": "USD", "et": "purchase"},),
         ("recorded",), "V-1", "approved", "4.20", "USD", ("approved",)),
    Case("binom-trk", "https://docs.binom.org/postback-url.php",
         ({"cnv_id": CLICK, "payout": "12.50", "cnv_status": "Hold", "cnv_currency": "EUR"},
          {"cnv_id": CLICK, "payout": "12.50", "cnv_status": "approve", "cnv_currency": "EUR"}),
         ("recorded", "duplicate"), CLICK, "approved", "12.50", "EUR", ("pending", "approved")),
    Case("redtrack-trk",
         "https://help.redtrack.io/knowledgebase/kb/basic-setup-9785/supported-dynamic-parameters/"
         "%d1%81lick-id-parameter/",
         ({"clickid": CLICK, "sum": "3.50", "type": "Purchase"},),
         ("recorded",), CLICK, "approved", "3.50", "USD", ("approved",)),
    Case("everflow-net", "https://helpdesk.everflow.io/en/articles/6173403-a-guide-to-parameters-and-macros",
         ({"sub1": CLICK, "transaction_id": "56d75d3a4d6e433fb215698c056d0d58", "payout": "7.00"},),
         ("recorded",), "56d75d3a4d6e433fb215698c056d0d58", "approved", "7.00", "USD", ("approved",)),
    Case("tune-net", "https://docs.tracklysms.com/guides/offers/tune-integration",
         ({"aff_sub": CLICK, "payout": "2.25", "transaction_id": "102f3c0b5a4e8d9"},),
         ("recorded",), "102f3c0b5a4e8d9", "approved", "2.25", "USD", ("approved",)),
    Case("cake-net", "https://support.getcake.com/en/support/solutions/articles/5000546096",
         ({"click_id": CLICK, "affiliate": "12", "leadid": "L-88", "price": "15.00"},),
         ("recorded",), "L-88", "approved", "15.00", "USD", ("approved",)),
    # impact.com: an action tracked PENDING, then APPROVED, then REVERSED (a reversal)
    Case("impact-net",
         "https://impact-helpdesk.freshdesk.com/en/support/solutions/articles/"
         "48001237753-enable-event-notification-postbacks-for-brands",
         ({"click_id": CLICK, "action_id": "19816.4321.112233", "payout": "10.00", "currency": "USD",
           "status": "PENDING"},
          {"click_id": CLICK, "action_id": "19816.4321.112233", "payout": "10.00", "currency": "USD",
           "status": "APPROVED"},
          {"click_id": CLICK, "action_id": "19816.4321.112233", "payout": "10.00", "currency": "USD",
           "status": "REVERSED"}),
         ("recorded", "duplicate", "duplicate"), "19816.4321.112233", "rejected", "10.00", "USD",
         ("pending", "approved", "rejected")),
    # AdGate Media: the documented example URL, then its chargeback ({state} rejected)
    Case("adgate-wall", "https://docs.adgatemedia.com/postbacks/postback-information",
         ({"conversion_id": ADGATE_CONVERSION, "user_id": CLICK, "point_value": "500", "usd_value": "0.50",
           "offer_title": "Install and play", "state": "approved"},
          {"conversion_id": ADGATE_CONVERSION, "user_id": CLICK, "point_value": "500", "usd_value": "0.50",
           "offer_title": "Install and play", "state": "rejected"}),
         ("recorded", "duplicate"), ADGATE_CONVERSION, "rejected", "0.50", "USD", ("approved", "rejected")),
    Case("appsflyer-app",
         "https://support.appsflyer.com/hc/en-us/articles/360016751637-Postback-macros-for-analytics-partners",
         ({"clickid": CLICK, "event_name": "af_purchase", "event_revenue": "9.99", "event_revenue_currency": "EUR",
           "event_revenue_USD": "10.89"},),
         ("recorded",), CLICK, "approved", "9.99", "EUR", ("approved",)),
    # Adjust: {revenue} is in cents, {revenue_float} in units: only the latter is the amount
    Case("adjust-app", "https://help.adjust.com/en/article/ad-revenue-callbacks",
         ({"click_id": CLICK, "event_token": "bkrfgq", "event_name": "purchase_100_coins", "revenue_float": "3.99",
           "revenue": "399", "currency": "usd"},),
         ("recorded",), CLICK, "approved", "3.99", "USD", ("approved",)),
    Case("branch-app", "https://help.branch.io/using-branch/docs/postback-macros-functions",
         ({"click_id": CLICK, "event_id": "1159346405768466123", "name": "PURCHASE", "revenue": "19.99",
           "currency": "EUR"},),
         ("recorded",), "1159346405768466123", "approved", "19.99", "EUR", ("approved",)),
    # CPX Research: status 1 completed, then 2 canceled for the same trans_id, each signed
    Case("cpx-wall", "https://www.cpx-research.com/main/en/publisher",
         ({"status": "1", "trans_id": CPX_TX, "user_id": CLICK, "amount_local": "250", "amount_usd": "0.25",
           "type": "complete", "hash": cpx_hash(CPX_TX)},
          {"status": "2", "trans_id": CPX_TX, "user_id": CLICK, "amount_local": "250", "amount_usd": "0.25",
           "type": "complete", "hash": cpx_hash(CPX_TX)}),
         ("recorded", "duplicate"), CPX_TX, "rejected", "0.25", "USD", ("approved", "rejected")),
    # Affise: approved ({status} 1), then declined (3): a reversal
    Case("affise-net", "https://help-center.affise.com/en/articles/6655842-affiliate-postback-macros-affiliates",
         ({"click_id": CLICK, "transaction_id": "A-9", "status": "1", "sum": "3.50", "currency": "USD"},
          {"click_id": CLICK, "transaction_id": "A-9", "status": "3", "sum": "3.50", "currency": "USD"}),
         ("recorded", "duplicate"), "A-9", "rejected", "3.50", "USD", ("approved", "rejected")),
]


@pytest.fixture
def net(make_harness: Any, tmp_path: Path) -> Harness:
    data = tmp_path / "presets"
    data.mkdir()
    (data / "config.toml").write_text(PRESETS_CONFIG, encoding="utf-8")
    (data / "fx_rates.csv").write_text(FX_RATES, encoding="utf-8")
    return make_harness(data)


def with_click(params: dict[str, str], click: str) -> dict[str, str]:
    return {name: click if value == CLICK else value for name, value in params.items()}


@pytest.mark.parametrize("case", CASES, ids=[case.preset for case in CASES])
def test_a_platforms_documented_postback_is_booked_as_it_says(net: Harness, case: Case) -> None:
    click = net.link_click(f"{case.partner}-1")
    for step, result in zip(case.steps, case.results, strict=True):
        ex = net.get(f"/postback/{case.key}", params=with_click(step, click))
        assert (ex.status, ex.json) == (200, {"ok": True, "result": result}), (case.doc, step, ex.json)
        assert ex.fields["dialect"] == "profile" and ex.fields["preset"] == case.preset
    net.close()
    tables, _ = pipeline.derive(net.data_dir, use_cache=False)
    transaction_id = click if case.transaction_id == CLICK else case.transaction_id
    rows = tables["conversions"].filter(pl.col("transaction_id") == transaction_id)
    assert rows.height == 1 and tables["conversions"].height == 1, tables["conversions"]
    row = rows.row(0, named=True)
    assert (row["click_id"], row["status"], row["amount"], row["currency"]) == (
        click, case.status, D(case.amount), case.currency), case.doc
    assert tuple(row["status_history"]) == case.history
    assert row["counts"] is (case.status == "approved")
    assert row["conflicting_duplicates"] == 0
    assert tables["postback_issues"].is_empty(), tables["postback_issues"]


def test_every_shipped_preset_has_a_test_of_its_documented_postback() -> None:
    tested_here = {case.preset for case in CASES}
    assert tested_here.isdisjoint(TESTED_THERE.keys() - {"affise"})
    assert set(preset_names()) == tested_here | TESTED_THERE.keys()
    assert {preset for preset, *_ in PRESET_PARTNERS.values()} == set(preset_names())
    source = (Path(__file__).parent / "test_receiver_profiles.py").read_text(encoding="utf-8")
    for preset, test in TESTED_THERE.items():
        assert f"def {test}(" in source, (preset, test)


def test_a_wrong_or_missing_cpx_hash_is_refused(net: Harness) -> None:
    click = net.link_click("cpx-wall-1")
    params = {"status": "1", "trans_id": "T-7", "user_id": click, "amount_usd": "0.25"}
    ex = net.get("/postback/key-cpx", params={**params, "hash": cpx_hash("T-7", secret="another key")})
    assert (ex.status, ex.json["error"]) == (403, "invalid_signature")
    # the hash covers the transaction id: another postback's hash does not fit this one
    ex = net.get("/postback/key-cpx", params={**params, "hash": cpx_hash("T-8")})
    assert (ex.status, ex.json["error"]) == (403, "invalid_signature")
    ex = net.get("/postback/key-cpx", params=params)
    assert (ex.status, ex.json["error"]) == (401, "signature_required")
    assert ex.fields["signature_present"] is False
    ok = net.get("/postback/key-cpx", params={**params, "secure_hash": cpx_hash("T-7")})
    assert ok.json == {"ok": True, "result": "recorded"} and ok.fields["signature_present"] is True
