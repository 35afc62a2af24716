"""Each shipped preset with its platform's documented postback, sent to the partner's own
`/postback/{key}` URL: the answer the platform expects (status, body, content type), the log
record of it, and the conversion the pipeline derives (status, amount, currency, transaction).

The postbacks are built from each platform's documentation (cited in its preset file,
receiver/contract/presets/), and signed with the documented formula in tests/support/profiles.py.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pipeline
from receiver.app import Settings
from receiver.contract.profiles import load_preset
from receiver.signatures import SignedRequest, ayet_query, bitlabs, bitlabs_urls
from tests.support.harness import Harness
from tests.support.profiles import (
    BITLABS_SECRET,
    FX_RATES,
    PRESETS_CONFIG,
    ayet_hash,
    bitlabs_url,
    ironsource_signature,
    tapjoy_verifier,
)

TEXT = "text/plain; charset=utf-8"


@pytest.fixture
def presets_dir(tmp_path: Path) -> Path:
    data = tmp_path / "presets"
    data.mkdir()
    (data / "config.toml").write_text(PRESETS_CONFIG, encoding="utf-8")
    (data / "fx_rates.csv").write_text(FX_RATES, encoding="utf-8")
    return data


@pytest.fixture
def net(make_harness: Any, presets_dir: Path) -> Harness:
    return make_harness(presets_dir)


def derived(h: Harness) -> dict[str, pl.DataFrame]:
    h.close()
    tables, _ = pipeline.derive(h.data_dir, use_cache=False)
    return tables


def conversion(tables: dict[str, pl.DataFrame], transaction_id: str) -> dict[str, Any]:
    rows = tables["conversions"].filter(pl.col("transaction_id") == transaction_id)
    assert rows.height == 1, tables["conversions"]
    return rows.row(0, named=True)


def assert_text(ex: Any, status: int, body: str) -> None:
    assert (ex.status, ex.resp.text) == (status, body)
    assert ex.resp.headers["content-type"] == TEXT
    assert ex.record["answer_body"] == body  # the log records what was answered
    assert ex.record["http_status"] == status


# ---------------------------------------------------------------- Keitaro


def test_keitaro_sale_in_keitaros_own_format(net: Harness) -> None:
    """docs.keitaro.io/en/conversions/postback.html: subid, tid, payout, status (lead, sale,
    rejected), currency."""
    click = net.link_click("keitaro-net-1")
    ex = net.get("/postback/key-keitaro", params={"subid": click, "tid": "K-1", "status": "lead", "payout": "21.00",
                                                  "currency": "eur"})
    assert ex.json == {"ok": True, "result": "recorded"} and ex.record["answer_body"] is None
    assert ex.fields["dialect"] == "profile" and ex.fields["preset"] == "keitaro"
    assert (ex.fields["status_raw"], ex.fields["status"]) == ("lead", "pending")
    assert ex.fields["amount_param"] == "payout"
    ex = net.get("/postback/key-keitaro", params={"subid": click, "tid": "K-1", "status": "sale"})
    assert ex.json == {"ok": True, "result": "duplicate"} and ex.fields["status"] == "approved"
    row = conversion(derived(net), "K-1")
    assert (row["status"], row["amount"], row["currency"], row["counts"]) == ("approved", D("21"), "EUR", True)
    assert row["status_history"] == ["pending", "approved"] and row["conflicting_duplicates"] == 0


def test_an_unmapped_status_is_unknown_and_recorded(net: Harness) -> None:
    click = net.link_click("keitaro-net-1")
    ex = net.get("/postback/key-keitaro", params={"subid": click, "tid": "K-2", "status": "deposit", "payout": "5"})
    assert ex.json == {"ok": True, "result": "recorded"}
    assert (ex.fields["status_raw"], ex.fields["status"]) == ("deposit", "unknown")
    row = conversion(derived(net), "K-2")
    assert (row["status"], row["counts"], row["not_counted_reason"]) == ("unknown", False, "unknown_status")


# ---------------------------------------------------------------- Affise


def test_affise_pending_then_approved(net: Harness) -> None:
    """help-center.affise.com, affiliate postback macros: {status} 1 approved, 2 pending,
    3 declined, 5 hold; {sum}; {currency}; {transactionid}; the click id in {sub1}."""
    click = net.link_click("affise-net-1")
    first = net.get("/postback/key-affise", params={"click_id": click, "transaction_id": "A-1", "status": "2",
                                                    "sum": "3.50", "currency": "USD"})
    assert first.json["result"] == "recorded" and first.fields["status"] == "pending"
    hold = net.get("/postback/key-affise", params={"click_id": click, "transaction_id": "A-1", "status": "5"})
    assert hold.fields["status"] == "pending"
    net.get("/postback/key-affise", params={"click_id": click, "transaction_id": "A-1", "status": "1",
                                            "sum": "3.50", "currency": "USD"})
    row = conversion(derived(net), "A-1")
    assert (row["status"], row["amount"], row["currency"], row["counts"]) == ("approved", D("3.5"), "USD", True)
    assert row["status_history"] == ["pending", "approved"]


# ---------------------------------------------------------------- Tapjoy


def tapjoy_params(click: str, request_id: str = "91b6051c-7d1f-47f1-82c2-6fa3ea49dc0e", currency: str = "50",
                  verifier: str | None = None) -> dict[str, str]:
    """Tapjoy's documented callback: snuid, currency, mac_address; with a secret key, id and verifier."""
    return {"snuid": click, "currency": currency, "mac_address": "00-16-41-34-2C-A6", "id": request_id,
            "verifier": verifier or tapjoy_verifier(request_id, click, currency)}


def test_tapjoy_callback_answered_200_and_booked(net: Harness) -> None:
    click = net.link_click("tapjoy-app-1")
    ex = net.get("/postback/key-tapjoy", params=tapjoy_params(click))
    assert_text(ex, 200, "OK")
    assert ex.record["result"] == "recorded" and ex.fields["signature_present"] is True
    assert ex.custom_data == {"mac_address": "00-16-41-34-2C-A6", "verifier": ex.custom_data["verifier"]}
    row = conversion(derived(net), "91b6051c-7d1f-47f1-82c2-6fa3ea49dc0e")
    # `currency` is Tapjoy's reward amount, never read as a currency: the offer's applies
    assert (row["status"], row["amount"], row["currency"], row["click_id"]) == ("approved", D("50"), "USD", click)


def test_tapjoy_permanent_refusals_are_403_so_it_stops_retrying(net: Harness) -> None:
    """Tapjoy retries every answer but 200 and 403 for four days: a wrong verifier and an unknown
    snuid are answered 403."""
    click = net.link_click("tapjoy-app-1")
    wrong = net.get("/postback/key-tapjoy", params=tapjoy_params(click, verifier="0" * 32))
    assert_text(wrong, 403, "invalid_signature")
    assert wrong.record["error"] == "invalid_signature" and wrong.record["result"] is None
    missing = {k: v for k, v in tapjoy_params(click).items() if k != "verifier"}
    assert_text(net.get("/postback/key-tapjoy", params=missing), 403, "signature_required")
    unknown = "00000000-0000-4000-8000-000000000999"
    ex = net.get("/postback/key-tapjoy", params=tapjoy_params(unknown))
    assert_text(ex, 403, "click_not_found")
    tables = derived(net)
    assert tables["conversions"].is_empty()
    assert tables["postback_issues"]["reason"].to_list() == ["invalid_signature", "signature_required",
                                                              "unknown_click_id"]


def test_a_transient_failure_keeps_503_for_tapjoy(make_harness: Any, presets_dir: Path) -> None:
    """Overloaded is not a refusal: the platform must retry, so it is not answered 403."""
    h = make_harness(presets_dir, settings=Settings(presets_dir, max_queue=0), queue_depth=lambda: 5)
    ex = h.get("/postback/key-tapjoy", params=tapjoy_params("00000000-0000-4000-8000-000000000001"))
    assert (ex.status, ex.json["error"]) == (503, "overloaded") and ex.record["answer_body"] is None


# ---------------------------------------------------------------- ironSource


def ironsource_params(click: str, event_id: str = "ev7c91", rewards: str = "50",
                      signature: str | None = None) -> dict[str, str]:
    """The documented callback URL appUserId=[USER_ID]&rewards=[REWARDS]&eventId=[EVENT_ID]&itemName=[ITEM_NAME],
    with the timestamp (YYYYMMDDHHMM) and signature ironSource adds."""
    timestamp = "202405011200"
    return {"appUserId": click, "rewards": rewards, "eventId": event_id, "itemName": "coins",
            "timestamp": timestamp,
            "signature": signature or ironsource_signature(timestamp, event_id, click, rewards)}


def test_ironsource_is_answered_its_event_id_ok(net: Harness) -> None:
    click = net.link_click("ironsource-app-1")
    ex = net.get("/postback/key-ironsource", params=ironsource_params(click))
    assert_text(ex, 200, "ev7c91:OK")
    assert ex.record["result"] == "recorded"
    again = net.get("/postback/key-ironsource", params=ironsource_params(click))
    assert_text(again, 200, "ev7c91:OK")  # a resend is acknowledged the same way
    assert again.record["result"] == "duplicate"
    row = conversion(derived(net), "ev7c91")
    assert (row["status"], row["amount"], row["currency"], row["duplicates"]) == ("approved", D("50"), "USD", 1)


def test_ironsource_wrong_or_missing_signature(net: Harness) -> None:
    click = net.link_click("ironsource-app-1")
    ex = net.get("/postback/key-ironsource", params=ironsource_params(click, signature="f" * 32))
    assert (ex.status, ex.json["error"]) == (403, "invalid_signature")
    # the signature covers the reward: a changed amount is refused
    tampered = ironsource_params(click)
    tampered["rewards"] = "5000"
    assert net.get("/postback/key-ironsource", params=tampered).json["error"] == "invalid_signature"
    bare = {k: v for k, v in ironsource_params(click).items() if k not in ("signature", "timestamp")}
    ex = net.get("/postback/key-ironsource", params=bare)
    assert (ex.status, ex.json["error"]) == (401, "signature_required")
    assert ex.fields["signature_present"] is False


# ---------------------------------------------------------------- ayeT-Studios


def ayet_get(h: Harness, params: dict[str, str], hash_value: str | None = "sign") -> Any:
    headers = {} if hash_value is None else {
        "X-Ayetstudios-Security-Hash": ayet_hash(params) if hash_value == "sign" else hash_value}
    return h.get("/postback/key-ayet", params=params, headers=headers)


def test_ayet_conversion_then_its_chargeback(net: Harness) -> None:
    """docs.ayetstudios.com offerwall callbacks: amount={currency_amount}&external_identifier=...
    &payout_usd=...; a chargeback's transaction id is the original's with "r-", is_chargeback=1 and
    a negative currency_amount; every callback carries X-Ayetstudios-Security-Hash."""
    click = net.link_click("ayet-wall-1")
    tid = "381f99333613b41392b15183d69a7240308e8461"
    conversion_params = {"network": "ayetstudios", "amount": "360", "external_identifier": click,
                         "payout_usd": "0.36", "transaction_id": tid, "is_chargeback": "0"}
    ex = ayet_get(net, conversion_params)
    assert ex.json == {"ok": True, "result": "recorded"}
    chargeback = {**conversion_params, "amount": "-360", "payout_usd": "-0.36", "transaction_id": f"r-{tid}",
                  "is_chargeback": "1", "chargeback_reason": "fraud"}
    ex = ayet_get(net, chargeback)
    assert ex.json == {"ok": True, "result": "duplicate"}
    assert ex.fields["reversal"] is True and ex.fields["transaction_id"] == tid
    assert ex.fields["reversal_transaction_id"] == f"r-{tid}" and ex.fields["reversal_amount"] == "0.36"
    row = conversion(derived(net), tid)
    assert (row["status"], row["amount"], row["currency"]) == ("rejected", D("0.36"), "USD")
    assert row["status_history"] == ["approved", "rejected"] and row["conflicting_duplicates"] == 0


def test_ayet_refusals_are_answered_200_so_they_are_not_resent(net: Harness) -> None:
    """ayeT resends every answer but 200, 12 times in an hour: a permanent refusal says so in a 200."""
    click = net.link_click("ayet-wall-1")
    params = {"external_identifier": click, "payout_usd": "0.36", "transaction_id": "t-9"}
    ex = ayet_get(net, params, hash_value="0" * 64)
    assert_text(ex, 200, "refused: invalid_signature")
    assert ex.record["error"] == "invalid_signature" and ex.record["result"] is None
    assert_text(ayet_get(net, params, hash_value=None), 200, "refused: signature_required")
    assert derived(net)["conversions"].is_empty()


def test_ayet_hashes_the_query_as_php_builds_it() -> None:
    # ksort: names in byte order (upper case first); http_build_query: spaces as +, ~ as %7E
    assert ayet_query("b=2&a=x%20y~z&B=1&a.b=3") == "B=1&a=x+y%7Ez&a_b=3&b=2"


# ---------------------------------------------------------------- BitLabs


def test_bitlabs_hash_is_the_documented_example() -> None:
    """developer.bitlabs.ai, securing callbacks: the example URL, app secret and hash."""
    request = SignedRequest({"hash": "dbcd6bb8ca677344592842a52b4fca9bec36cd4b"},
                            query="uid=8cc877ee-af19-488d-b28d-216fb866b996&val=500&hash=dbcd6bb8ca677344592842a52b4fca9bec36cd4b",
                            path="/complete", url_bases=("https://publisher.com",))
    assert bitlabs_urls(request) == ["https://publisher.com/complete?uid=8cc877ee-af19-488d-b28d-216fb866b996&val=500"]
    profile = None  # BitLabs' hash reads no profile field
    assert bitlabs(b"JLOIAUNMHFli7ZJOQVEzm98rzqnm9", profile, request) is None  # type: ignore[arg-type]
    assert bitlabs(b"another secret", profile, request)[0] == "invalid_signature"  # type: ignore[arg-type,index]


def test_bitlabs_complete_then_reconciliation_reverses_it(net: Harness) -> None:
    """developer.bitlabs.ai callback parameters: UID, TX, RAW (USD paid to the publisher), VAL,
    TYPE (COMPLETE, RECONCILIATION...), REF (the transaction a reconciliation looks up), and the
    appended hash; a reconciliation carries negative amounts."""
    click = net.link_click("bitlabs-wall-1")
    complete = bitlabs_url(f"/postback/key-bitlabs?uid={click}&tx=TX-1&raw=0.50&val=500&type=COMPLETE")
    ex = net.get(complete.split("?")[0], query_string=complete.split("?", 1)[1])
    assert ex.json == {"ok": True, "result": "recorded"} and ex.fields["signature_present"] is True
    reconciliation = bitlabs_url(f"/postback/key-bitlabs?uid={click}&tx=TX-2&raw=-0.50&val=-500"
                                 "&type=RECONCILIATION&ref=TX-1")
    ex = net.get(reconciliation.split("?")[0], query_string=reconciliation.split("?", 1)[1])
    assert ex.json == {"ok": True, "result": "duplicate"}
    assert (ex.fields["transaction_id"], ex.fields["transaction_id_source"]) == ("TX-1", "reverses")
    assert ex.fields["reversal_transaction_id"] == "TX-2" and ex.fields["status"] == "rejected"
    assert ex.fields["amount"] is None and ex.fields["reversal_amount"] == "0.50"
    tables = derived(net)
    row = conversion(tables, "TX-1")
    assert (row["status"], row["amount"], row["currency"], row["counts"]) == ("rejected", D("0.5"), "USD", False)
    assert row["status_history"] == ["approved", "rejected"]
    assert row["conflicting_duplicates"] == 0  # the negative amount is the reversal, not a conflict
    assert tables["conversions"].height == 1  # never a conversion of its own
    assert tables["postback_issues"].is_empty()


def test_a_reversal_of_a_conversion_never_recorded_is_refused_for_a_retry(net: Harness) -> None:
    click = net.link_click("bitlabs-wall-1")
    url = bitlabs_url(f"/postback/key-bitlabs?uid={click}&tx=TX-8&raw=-0.50&type=RECONCILIATION&ref=TX-404")
    ex = net.get(url.split("?")[0], query_string=url.split("?", 1)[1])
    assert (ex.status, ex.json["error"]) == (404, "reversal_original_not_found")
    tables = derived(net)
    assert tables["conversions"].is_empty()
    assert tables["postback_issues"]["reason"].to_list() == ["reversal_original_not_found"]


def test_bitlabs_wrong_or_missing_hash(net: Harness) -> None:
    click = net.link_click("bitlabs-wall-1")
    query = f"uid={click}&tx=TX-3&raw=0.50&type=COMPLETE"
    signed = bitlabs_url(f"/postback/key-bitlabs?{query}", secret="not the app secret")
    ex = net.get("/postback/key-bitlabs", query_string=signed.split("?", 1)[1])
    assert (ex.status, ex.json["error"]) == (403, "invalid_signature")
    # hashed for another host than the one we are called at
    other = bitlabs_url(f"/postback/key-bitlabs?{query}", base="https://elsewhere.example")
    assert net.get("/postback/key-bitlabs", query_string=other.split("?", 1)[1]).json["error"] == "invalid_signature"
    ex = net.get("/postback/key-bitlabs", query_string=query)
    assert (ex.status, ex.json["error"]) == (401, "signature_required")
    assert BITLABS_SECRET  # the example secret of BitLabs' documentation signs the good ones


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize(("sent", "amount"), [("€1.234,50", "1234.50"), ("1 234,5", "1234.5"), ("12,00", "12.00"),
                                              ("€ 0,99", "0.99")])
def test_amount_formats_of_a_profile(net: Harness, sent: str, amount: str) -> None:
    click = net.link_click("formats-1")
    ex = net.get("/postback/key-formats", params={"click_id": click, "amount": sent})
    assert ex.json["result"] == "recorded" and ex.fields["amount"] == amount


@pytest.mark.parametrize("sent", ["1.5", "1,5,0", "$-1", "-2,00", "12 USD"])
def test_amounts_the_profile_cannot_read_are_refused_never_guessed(net: Harness, sent: str) -> None:
    click = net.link_click("formats-1")
    ex = net.get("/postback/key-formats", params={"click_id": click, "amount": sent})
    assert (ex.status, ex.json["error"]) == (400, "invalid_amount"), sent
    assert ex.fields["dialect"] == "profile"


def test_a_negative_amount_without_reversals_is_refused(net: Harness) -> None:
    click = net.link_click("keitaro-net-1")
    ex = net.get("/postback/key-keitaro", params={"subid": click, "tid": "K-9", "payout": "-3"})
    assert (ex.status, ex.json["error"]) == (400, "invalid_amount")
    assert 'negative = "reversal"' in ex.json["message"]


# ---------------------------------------------------------------- routing


def test_the_path_key_chooses_the_profile_and_the_seed_route_stays_the_seed(net: Harness) -> None:
    click = net.link_click("keitaro-net-1")
    # Keitaro's own names on its profile URL
    ex = net.get("/postback/key-keitaro", params={"subid": click, "tid": "K-3", "status": "sale"})
    assert ex.fields["dialect"] == "profile" and ex.fields["click_id"] == click
    # the same partner's key on the seed route reads the seed vocabulary (no subid there)
    ex = net.get("/api/postback", params={"api_key": "key-keitaro", "subid": click})
    assert (ex.status, ex.json["error"]) == (400, "click_id_required")
    assert ex.fields["dialect"] == "network"


def test_every_preset_profile_resolves_in_the_test_network(presets_dir: Path) -> None:
    from receiver.contract.config_file import load_config

    config = load_config(presets_dir / "config.toml")
    for partner in config.partners.values():
        if partner.profile is not None and partner.profile.preset is not None:
            assert partner.profile.docs == load_preset(partner.profile.preset).docs


# ---------------------------------------------------------------- a profile of its own


CUSTOM_CONFIG = '''public_url = "https://rx.example"

[[partners]]
id = "custom"
api_key = "key-custom"
status_updates = true
signing_secret = "custom-signing-secret-0123"

[partners.params]
click_id = ["cid"]
transaction_id = ["order"]

[partners.amounts]
negative = "reversal"
reverses = ["original"]

[partners.answers]
success = { body = "ok {order}" }
refusal = { status = 409, body = "later: {error}" }
permanent_refusal = { status = 410, body = "never: {error}" }

[[offers]]
id = "custom-offer"
partner = "custom"
url = "https://custom.example/"

[[links]]
slug = "custom-1"
offer = "custom-offer"
affiliate = "aff1"
'''


@pytest.fixture
def custom(make_harness: Any, tmp_path: Path) -> Harness:
    data = tmp_path / "custom"
    data.mkdir()
    (data / "config.toml").write_text(CUSTOM_CONFIG, encoding="utf-8")
    return make_harness(data)


def signed_get(h: Harness, query: str) -> Any:
    from receiver.postbacks import sign, signing_message

    timestamp = str(int(h.clock.now.timestamp()))
    signature = sign("custom-signing-secret-0123", signing_message(timestamp, "GET", "/postback/key-custom", query,
                                                                    b""))
    return h.get("/postback/key-custom", query_string=query,
                 headers={"X-Timestamp": timestamp, "X-Signature": signature})


def test_a_profile_with_our_signature_and_its_own_answers(custom: Harness) -> None:
    click = custom.link_click("custom-1")
    # our X-Signature scheme (a secret, no platform scheme): unsigned is a permanent refusal
    unsigned = custom.get("/postback/key-custom", params={"cid": click, "order": "o-1", "amount": "5"})
    assert_text(unsigned, 410, "never: signature_required")
    assert unsigned.record["error"] == "signature_required"
    ok = signed_get(custom, f"cid={click}&order=o-1&amount=5")
    assert_text(ok, 200, "ok o-1")
    assert ok.record["result"] == "recorded" and ok.fields["signature_present"] is True
    # a reversal of a conversion not recorded yet: a refusal a retry may fix, not a permanent one
    early = signed_get(custom, f"cid={click}&order=r-2&amount=-5&original=o-2")
    assert_text(early, 409, "later: reversal_original_not_found")
    reversal = signed_get(custom, f"cid={click}&order=r-1&amount=-5&original=o-1")
    assert_text(reversal, 200, "ok r-1")
    assert reversal.record["result"] == "duplicate" and reversal.fields["transaction_id"] == "o-1"
