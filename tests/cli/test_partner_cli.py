"""`clickledger partner url` and `clickledger partner check`: the URL to paste into a partner's
platform (its macros filled in), and a sample postback read through the partner's profile
without recording anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from clickledger.cli import main
from receiver.contract.config_file import load_config
from tests.support.harness import Harness
from tests.support.profiles import FX_RATES, PRESET_PARTNERS, PRESETS_CONFIG, PUBLIC_URL, cpx_hash

CLICK = "8cc877ee-af19-488d-b28d-216fb866b996"
SEED_PARTNER = '''
[[partners]]
id = "seed-net"
api_key = "key-seed"

[[partners]]
id = "hashed"
api_key_sha256 = "5b2bd1bbd0b1bd3d19b8a7b0b5e8e2d8b1c1f7f3fd2c3bbb5ad2c2f3b7e7c6a1"
preset = "keitaro"
'''


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(PRESETS_CONFIG + SEED_PARTNER, encoding="utf-8")
    (data / "fx_rates.csv").write_text(FX_RATES, encoding="utf-8")
    return data


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- partner url


@pytest.mark.parametrize(("partner", "url"), [
    ("keitaro-net", "/postback/key-keitaro?subid={external_id}&tid={tid}&payout={revenue}&status={status}"),
    ("cake-net", "/postback/key-cake?click_id=#s2#&leadid=#leadid#&price=#price#"),
    ("bitlabs-wall", "/postback/key-bitlabs?uid=[%UID%]&tx=[%TX%]&raw=[%RAW%]&type=[%TYPE%]&ref=[%REF%]"),
    ("cpx-wall", "/postback/key-cpx?user_id={user_id}&trans_id={trans_id}&amount_usd={amount_usd}"
                 "&status={status}&hash={secure_hash}"),
    ("appsflyer-app", "/postback/key-appsflyer?clickid=(clickid)&event_revenue=(event_revenue)"
                      "&event_revenue_currency=(event_revenue_currency)"),
    ("branch-app", "/postback/key-branch?click_id=${(last_attributed_touch_data.click_id)!}&event_id=${(id)!}"
                   "&revenue=${(event_data.revenue)!}&currency=${(event_data.currency)!}"),
    ("ironsource-app", "/postback/key-ironsource?appUserId=[USER_ID]&eventId=[EVENT_ID]&rewards=[REWARDS]"),
])
def test_url_prints_the_partners_url_with_its_platforms_macros(
        capsys: pytest.CaptureFixture[str], data: Path, partner: str, url: str) -> None:
    code, out, err = run(capsys, "partner", "url", partner, "--data", str(data))
    assert (code, out, err) == (0, PUBLIC_URL + url + "\n", "")


def test_url_of_a_platform_that_appends_its_own_parameters(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, err = run(capsys, "partner", "url", "tapjoy-app", "--data", str(data))
    assert (code, out) == (0, f"{PUBLIC_URL}/postback/key-tapjoy\n")
    assert "no macro for the click id" in err and "snuid" in err


def sample_value(field: str, profile: Any, click: str) -> str:
    return {"click_id": click, "transaction_id": "T-1", "amount": "5.00", "currency": "USD",
            "status": next((v for v, s in profile.statuses.items() if s == "approved"), "")}[field]


@pytest.mark.parametrize("partner", [p for p, (_, _, secret, _) in PRESET_PARTNERS.items() if secret is None])
def test_the_printed_url_filled_in_as_the_platform_fills_it_is_booked(
        capsys: pytest.CaptureFixture[str], make_harness: Any, data: Path, partner: str) -> None:
    """Every macro sits in the parameter the profile reads that field from: the platform's filled-in
    URL is a conversion of the click, with the amount, currency and status the macros stood for."""
    assert main(["partner", "url", partner, "--data", str(data)]) == 0
    url = capsys.readouterr().out.strip()
    profile = load_config(data / "config.toml").partners[partner].profile
    by_macro = {macro: field for field, macro in profile.macros.items()}
    h: Harness = make_harness(data)
    click = h.link_click(f"{partner}-1")
    parts = urlsplit(url, allow_fragments=False)  # CAKE's #s2# is a macro, filled before the request
    params = {name: sample_value(by_macro[macro], profile, click) for name, macro in parse_qsl(parts.query)}
    assert params, url
    ex = h.get(parts.path, params=params)
    assert ex.json == {"ok": True, "result": "recorded"}, (url, ex.json)
    assert ex.fields["click_id"] == click and ex.fields["status"] == "approved"
    if "amount" in profile.macros:
        assert ex.fields["amount"] == "5.00"


def test_url_of_a_partner_without_a_profile_says_what_to_set(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, err = run(capsys, "partner", "url", "seed-net", "--data", str(data))
    assert (code, out) == (2, "")
    assert "partner 'seed-net' has no preset or profile" in err and 'preset = "NAME"' in err and "keitaro" in err


def test_url_of_an_unknown_partner_or_a_hashed_key(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, err = run(capsys, "partner", "url", "nobody", "--data", str(data))
    assert (code, out) == (2, "") and "no partner 'nobody'" in err and "keitaro-net" in err
    code, out, err = run(capsys, "partner", "url", "hashed", "--data", str(data))
    assert (code, out) == (2, "")
    assert "api_key_sha256" in err and f"{PUBLIC_URL}/postback/API_KEY?subid={{external_id}}" in err


def test_partner_commands_without_a_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "partner", "url", "keitaro-net", "--data", str(tmp_path))
    assert (code, out) == (2, "") and "config.toml: file not found" in err and "clickledger init" in err


# ---------------------------------------------------------------- partner check


def check(capsys: pytest.CaptureFixture[str], data: Path, partner: str, url: str) -> tuple[int, list[str], str]:
    code, out, err = run(capsys, "partner", "check", partner, url, "--data", str(data))
    return code, out.splitlines(), err


def test_check_says_how_each_parameter_was_read_and_records_nothing(
        capsys: pytest.CaptureFixture[str], data: Path) -> None:
    url = (f"{PUBLIC_URL}/postback/key-affise?sub1={CLICK}&transactionid=A-1&status=2&sum=3.50&currency=usd"
           "&offer_name=Shop")
    code, lines, err = check(capsys, data, "affise-net", url)
    assert (code, err) == (0, "")
    assert f"  click_id        sub1 = '{CLICK}'" in lines
    assert "  transaction_id  transactionid = 'A-1'" in lines
    assert "  amount          sum = '3.50'" in lines
    assert "  commission      not sent (reads commission)" in lines
    assert "  user_id         not read by this profile" in lines
    assert "amount: 3.50 USD" in lines and "transaction: A-1 (param)" in lines
    assert "status: '2' -> pending" in lines
    assert "  mapping (approved: 1; pending: 2, 5; rejected: 3)" in lines
    assert "ignored (kept in custom_data): offer_name = 'Shop'" in lines
    assert lines[-1] == "reads cleanly: the receiver would accept it if its click exists"
    assert not (data / "log").exists() or not any((data / "log").iterdir())  # nothing recorded


def test_check_finds_unfilled_macros_unmapped_statuses_and_refusals(
        capsys: pytest.CaptureFixture[str], data: Path) -> None:
    url = f"{PUBLIC_URL}/postback/key-keitaro?subid={{external_id}}&tid=##TID##&payout=21,00&status=deposit"
    code, lines, _ = check(capsys, data, "keitaro-net", url)
    assert code == 1
    assert "unsubstituted macro: subid = '{external_id}' holds '{external_id}': the platform did not fill it; " \
           "use the macro it documents for this value" in lines
    assert any(line.startswith("unsubstituted macro: tid = '##TID##' holds '##TID##'") for line in lines)
    assert "status: 'deposit' -> unknown" in lines
    assert "  'deposit' is not mapped: it would not count; map it in [partners.statuses], e.g. " \
           "approved = [\"deposit\"]" in lines
    # the click id is checked first: an unfilled macro there is unsubstituted_macro (issue 12), not invalid_amount
    assert lines[-1].startswith("would be refused: unsubstituted_macro: click_id (parameter 'subid') is the "
                                "unfilled macro '{external_id}'")


def test_check_reads_a_reversal_and_checks_the_signature(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    base = f"{PUBLIC_URL}/postback/key-cpx?status=2&trans_id=T-5&user_id={CLICK}&amount_usd=0.25"
    code, lines, _ = check(capsys, data, "cpx-wall", f"{base}&hash={cpx_hash('T-5')}")
    assert code == 0
    assert "status: '2' -> rejected" in lines and "signature: cpx: valid" in lines
    code, lines, _ = check(capsys, data, "cpx-wall", f"{base}&hash={cpx_hash('T-5', secret='wrong')}")
    assert code == 1
    assert any(line.startswith("signature: cpx: invalid_signature (") for line in lines)
    assert lines[-1] == "would be refused for its signature (above)"
    # BitLabs: a negative reconciliation names the transaction it takes back
    url = f"{PUBLIC_URL}/postback/key-bitlabs?uid={CLICK}&tx=TX-2&raw=-0.50&type=RECONCILIATION&ref=TX-1"
    code, lines, _ = check(capsys, data, "bitlabs-wall", url)
    assert code == 1  # no hash: BitLabs always signs
    assert "transaction: TX-1 (reverses)" in lines and "amount: 0.50 the offer's currency (a reversal)" in lines
    assert any(line.startswith("signature: bitlabs: signature_required") for line in lines)


def test_check_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, lines, err = check(capsys, data, "seed-net", f"{PUBLIC_URL}/api/postback?click_id={CLICK}")
    assert (code, lines) == (2, []) and "has no preset or profile" in err
    code, lines, err = check(capsys, data, "keitaro-net", "subid=x")
    assert (code, lines) == (2, []) and "has no query" in err
    code, lines, _ = check(capsys, data, "keitaro-net", f"{PUBLIC_URL}/postback/key-affise?subid={CLICK}")
    assert code == 1
    assert "path: the key in the URL's path is not this partner's api key: the receiver would answer " \
           "invalid_api_key" in lines
