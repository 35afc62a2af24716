"""Postback authentication through the app: IP allowlists, X-Forwarded-For trust, HMAC signatures.

Every request goes through `harness.request`, which asserts exactly one log record per
request agreeing with the answer; refusals are also checked for the fields support needs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from receiver.postbacks import SIGNATURE_WINDOW_SECONDS, sign, signing_message
from tests.support.harness import Harness
from tests.support.network import AUTH_CONFIG, OPEN_SECRET, SIGNING_SECRET
from tests.support.paths import REPO

ALLOWED = "203.0.113.5"
OUTSIDER = "192.0.2.1"


@pytest.fixture
def auth(make_harness, tmp_path: Path) -> Harness:
    data = tmp_path / "auth"
    data.mkdir()
    (data / "config.toml").write_text(AUTH_CONFIG, encoding="utf-8")
    return make_harness(data)


def now_ts(h: Harness, offset: int = 0) -> str:
    return str(int(h.clock.now.timestamp()) + offset)


def signed_headers(
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    *,
    timestamp: str,
    secret: str = SIGNING_SECRET,
) -> dict[str, str]:
    return {
        "X-Timestamp": timestamp,
        "X-Signature": sign(secret, signing_message(timestamp, method, path, query, body)),
    }


def assert_refused(ex, status: int, code: str, *, client_ip: str, signature_present: bool) -> None:
    assert (ex.status, ex.json["error"]) == (status, code), ex.json
    assert ex.record["error"] == code and ex.record["http_status"] == status
    assert ex.fields["client_ip"] == client_ip
    assert ex.fields["signature_present"] is signature_present
    assert "key_fingerprint" in ex.fields


# ---------------------------------------------------------------- IP allowlist


def test_allowlisted_address_is_accepted(auth: Harness) -> None:
    cid = auth.link_click("fenced-1")
    q = urlencode({"api_key": "key-fenced", "click_id": cid})
    ex = auth.get("/api/postback", query_string=q, remote_addr=ALLOWED)
    assert (ex.status, ex.json["result"]) == (200, "recorded")
    assert ex.fields["client_ip"] == ALLOWED
    ex = auth.get("/api/postback", query_string=q + "&txn=2", remote_addr="198.51.100.7")
    assert ex.status == 200
    ex = auth.get("/api/postback", query_string=q + "&txn=3", remote_addr="2001:db8::77")
    assert ex.status == 200


def test_other_address_is_refused_and_logged(auth: Harness) -> None:
    cid = auth.link_click("fenced-1")
    ex = auth.get(
        "/api/postback",
        query_string=urlencode({"api_key": "key-fenced", "click_id": cid}),
        remote_addr=OUTSIDER,
    )
    assert_refused(ex, 403, "ip_not_allowed", client_ip=OUTSIDER, signature_present=False)
    assert ex.fields["key_partner_id"] == "fenced"
    assert ex.fields["key_fingerprint"] == hashlib.sha256(b"key-fenced").hexdigest()[:12]
    assert ex.record["remote_addr"] == OUTSIDER


def test_test_postback_with_valid_key_is_still_fenced(auth: Harness) -> None:
    q = urlencode({"api_key": "key-fenced", "click_id": "anything", "status": "test"})
    ex = auth.get("/api/postback", query_string=q, remote_addr=OUTSIDER)
    assert_refused(ex, 403, "ip_not_allowed", client_ip=OUTSIDER, signature_present=False)
    ex = auth.get("/api/postback", query_string=q, remote_addr=ALLOWED)
    assert (ex.status, ex.json["result"]) == (200, "test")


def test_public_partner_allowlist_applies_to_its_clicks(auth: Harness) -> None:
    cid = auth.link_click("open-fenced-1")
    ex = auth.get("/postback", query_string=f"cid={cid}", remote_addr=OUTSIDER)
    assert_refused(ex, 403, "ip_not_allowed", client_ip=OUTSIDER, signature_present=False)
    assert ex.fields["partner_id"] == "open-fenced" and ex.fields["key_partner_id"] is None
    ex = auth.get("/postback", query_string=f"cid={cid}", remote_addr=ALLOWED)
    assert ex.json["result"] == "recorded"


def test_unknown_key_is_refused_before_the_allowlist(auth: Harness) -> None:
    cid = auth.link_click("fenced-1")
    ex = auth.get(
        "/api/postback", query_string=f"api_key=nope&click_id={cid}", remote_addr=OUTSIDER
    )
    assert_refused(ex, 403, "invalid_api_key", client_ip=OUTSIDER, signature_present=False)


def test_forwarded_for_is_believed_from_a_trusted_proxy(auth: Harness) -> None:
    cid = auth.link_click("fenced-1")
    q = urlencode({"api_key": "key-fenced", "click_id": cid})
    ex = auth.get(
        "/api/postback",
        query_string=q,
        remote_addr="10.0.0.2",
        headers={"X-Forwarded-For": f"6.6.6.6, {ALLOWED}"},
    )
    assert ex.json["result"] == "recorded"
    assert ex.fields["client_ip"] == ALLOWED
    assert ex.record["forwarded_for"] == f"6.6.6.6, {ALLOWED}"
    ex = auth.get(
        "/api/postback",
        query_string=q + "&txn=2",
        remote_addr="127.0.0.1",
        headers={"X-Forwarded-For": ALLOWED},
    )
    assert ex.json["result"] == "recorded"
    ex = auth.get(
        "/api/postback",
        query_string=q + "&txn=3",
        remote_addr="127.0.0.1",
        headers={"X-Forwarded-For": f"{ALLOWED}, {OUTSIDER}"},
    )
    assert_refused(ex, 403, "ip_not_allowed", client_ip=OUTSIDER, signature_present=False)


def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored(auth: Harness) -> None:
    cid = auth.link_click("fenced-1")
    ex = auth.get(
        "/api/postback",
        query_string=urlencode({"api_key": "key-fenced", "click_id": cid}),
        remote_addr=OUTSIDER,
        headers={"X-Forwarded-For": ALLOWED},
    )
    assert_refused(ex, 403, "ip_not_allowed", client_ip=OUTSIDER, signature_present=False)
    assert ex.record["forwarded_for"] == ALLOWED  # kept in the record, but not believed


def test_partners_without_allowlist_accept_any_address(auth: Harness) -> None:
    cid = auth.link_click("alpha-1")
    ex = auth.get(
        "/api/postback", query_string=f"api_key=key-alpha&click_id={cid}", remote_addr=OUTSIDER
    )
    assert ex.json["result"] == "recorded"
    assert ex.fields["client_ip"] == OUTSIDER and ex.fields["signature_present"] is False


# ---------------------------------------------------------------- signatures


def test_signed_get_is_accepted(auth: Harness) -> None:
    cid = auth.link_click("signer-1")
    query = urlencode({"api_key": "key-signer", "click_id": cid, "amount": "5.00"})
    headers = signed_headers("GET", "/api/postback", query, timestamp=now_ts(auth))
    ex = auth.get("/api/postback", query_string=query, headers=headers)
    assert (ex.status, ex.json["result"]) == (200, "recorded")
    assert ex.fields["signature_present"] is True


@pytest.mark.parametrize("path", ["/api/postback", "/postback/key-signer", "/api/v1/earn/postback"])
def test_signed_json_and_form_posts_are_accepted(auth: Harness, path: str) -> None:
    cid = auth.link_click("signer-1")
    body = json.dumps({"api_key": "key-signer", "click_id": cid, "amount": 3}).encode()
    ex = auth.post(
        path,
        body=body,
        content_type="application/json",
        headers=signed_headers("POST", path, "", body, timestamp=now_ts(auth)),
    )
    assert ex.json["result"] == "recorded", ex.json
    form = urlencode({"api_key": "key-signer", "click_id": cid, "txid": "t2"}).encode()
    query = "src=x"
    ex = auth.post(
        path,
        body=form,
        query_string=query,
        content_type="application/x-www-form-urlencoded",
        headers=signed_headers("POST", path, query, form, timestamp=now_ts(auth)),
    )
    assert ex.json["result"] == "recorded", ex.json


def test_missing_signature_is_401(auth: Harness) -> None:
    cid = auth.link_click("signer-1")
    query = urlencode({"api_key": "key-signer", "click_id": cid})
    ex = auth.get("/api/postback", query_string=query)
    assert_refused(ex, 401, "signature_required", client_ip="127.0.0.1", signature_present=False)
    good = signed_headers("GET", "/api/postback", query, timestamp=now_ts(auth))
    ex = auth.get("/api/postback", query_string=query, headers={"X-Signature": good["X-Signature"]})
    assert_refused(ex, 401, "signature_required", client_ip="127.0.0.1", signature_present=True)
    ex = auth.get("/api/postback", query_string=query, headers={"X-Timestamp": good["X-Timestamp"]})
    assert_refused(ex, 401, "signature_required", client_ip="127.0.0.1", signature_present=False)


def test_bad_signatures_are_403(auth: Harness) -> None:
    cid = auth.link_click("signer-1")
    query = urlencode({"api_key": "key-signer", "click_id": cid, "amount": "5"})
    ts = now_ts(auth)
    good = signed_headers("GET", "/api/postback", query, timestamp=ts)
    cases = [
        {**good, "X-Signature": "sha256=" + "0" * 64},
        {**good, "X-Signature": "garbage \u00e9"},
        signed_headers(
            "GET", "/api/postback", query, timestamp=ts, secret="another-secret-0123456789"
        ),
        signed_headers("POST", "/api/postback", query, timestamp=ts),  # another method
        signed_headers("GET", "/postback", query, timestamp=ts),  # another route
        {**good, "X-Timestamp": str(int(ts) + 1)},  # the timestamp is signed too
    ]
    for headers in cases:
        ex = auth.get("/api/postback", query_string=query, headers=headers)
        assert_refused(ex, 403, "invalid_signature", client_ip="127.0.0.1", signature_present=True)
    tampered = query.replace("amount=5", "amount=500")  # the signed amount was 5
    ex = auth.get("/api/postback", query_string=tampered, headers=good)
    assert_refused(ex, 403, "invalid_signature", client_ip="127.0.0.1", signature_present=True)
    # Hex case and the prefix's case do not matter.
    upper = {**good, "X-Signature": good["X-Signature"].upper()}
    assert auth.get("/api/postback", query_string=query, headers=upper).json["result"] == "recorded"


def test_timestamp_must_be_unix_seconds(auth: Harness) -> None:
    cid = auth.link_click("signer-1")
    query = f"api_key=key-signer&click_id={cid}"
    for ts in ("1.5e9", "-1", "soon", str(10**13)):
        ex = auth.get(
            "/api/postback",
            query_string=query,
            headers=signed_headers("GET", "/api/postback", query, timestamp=ts),
        )
        assert_refused(ex, 403, "invalid_signature", client_ip="127.0.0.1", signature_present=True)


@pytest.mark.parametrize(
    "offset, accepted",
    [
        (-SIGNATURE_WINDOW_SECONDS, True),
        (SIGNATURE_WINDOW_SECONDS, True),
        (-SIGNATURE_WINDOW_SECONDS - 1, False),
        (SIGNATURE_WINDOW_SECONDS + 1, False),
        (-86400, False),
    ],
)
def test_signature_window_is_300_seconds_either_way(
    auth: Harness, offset: int, accepted: bool
) -> None:
    cid = auth.link_click("signer-1")
    query = f"api_key=key-signer&click_id={cid}"
    ex = auth.get(
        "/api/postback",
        query_string=query,
        headers=signed_headers("GET", "/api/postback", query, timestamp=now_ts(auth, offset)),
    )
    if accepted:
        assert ex.json["result"] == "recorded"
    else:
        assert_refused(ex, 403, "signature_expired", client_ip="127.0.0.1", signature_present=True)


def test_window_follows_the_injected_clock(auth: Harness) -> None:
    cid = auth.link_click("signer-1")
    query = f"api_key=key-signer&click_id={cid}"
    headers = signed_headers("GET", "/api/postback", query, timestamp=now_ts(auth))
    auth.clock.advance(timedelta(seconds=SIGNATURE_WINDOW_SECONDS + 1))
    ex = auth.get("/api/postback", query_string=query, headers=headers)
    assert_refused(ex, 403, "signature_expired", client_ip="127.0.0.1", signature_present=True)


def test_test_postback_of_a_signing_partner_needs_its_signature(auth: Harness) -> None:
    query = "api_key=key-signer&click_id=x&status=test"
    ex = auth.get("/api/postback", query_string=query)
    assert_refused(ex, 401, "signature_required", client_ip="127.0.0.1", signature_present=False)
    ex = auth.get(
        "/api/postback",
        query_string=query,
        headers=signed_headers("GET", "/api/postback", query, timestamp=now_ts(auth)),
    )
    assert ex.json["result"] == "test"


def test_public_signing_partner_needs_its_own_secret(auth: Harness) -> None:
    cid = auth.link_click("open-signer-1")
    query = f"cid={cid}"
    ex = auth.get("/postback", query_string=query)
    assert_refused(ex, 401, "signature_required", client_ip="127.0.0.1", signature_present=False)
    ex = auth.get(
        "/postback",
        query_string=query,
        headers=signed_headers("GET", "/postback", query, timestamp=now_ts(auth)),
    )
    assert_refused(ex, 403, "invalid_signature", client_ip="127.0.0.1", signature_present=True)
    ex = auth.get(
        "/postback",
        query_string=query,
        headers=signed_headers(
            "GET", "/postback", query, timestamp=now_ts(auth), secret=OPEN_SECRET
        ),
    )
    assert ex.json["result"] == "recorded"


def test_allowlist_is_checked_before_the_signature(auth: Harness) -> None:
    cid = auth.link_click("fortress-1")
    query = f"api_key=key-fortress&click_id={cid}"
    headers = signed_headers("GET", "/api/postback", query, timestamp=now_ts(auth))
    ex = auth.get("/api/postback", query_string=query, headers=headers, remote_addr=OUTSIDER)
    assert_refused(ex, 403, "ip_not_allowed", client_ip=OUTSIDER, signature_present=True)
    ex = auth.get("/api/postback", query_string=query, remote_addr=ALLOWED)
    assert_refused(ex, 401, "signature_required", client_ip=ALLOWED, signature_present=False)
    ex = auth.get("/api/postback", query_string=query, headers=headers, remote_addr=ALLOWED)
    assert ex.json["result"] == "recorded"


def test_signed_key_of_another_partner_is_still_invalid(auth: Harness) -> None:
    cid = auth.link_click("alpha-1")
    query = f"api_key=key-signer&click_id={cid}"
    ex = auth.get(
        "/api/postback",
        query_string=query,
        headers=signed_headers("GET", "/api/postback", query, timestamp=now_ts(auth)),
    )
    assert_refused(ex, 403, "invalid_api_key", client_ip="127.0.0.1", signature_present=True)


def test_malformed_body_refusal_still_logs_the_client_address(auth: Harness) -> None:
    ex = auth.post(
        "/api/postback", body=b"{not json", content_type="application/json", remote_addr=OUTSIDER
    )
    assert (ex.status, ex.json["error"]) == (400, "invalid_body")
    assert ex.fields["client_ip"] == OUTSIDER


def test_readme_python_example_matches_the_receiver() -> None:
    """The documented sender code (docs/endpoints.md), run as written, produces the receiver's signature."""
    readme = (REPO / "docs" / "endpoints.md").read_text(encoding="utf-8")
    start = readme.index("```python\nimport hashlib, hmac, time")
    example = readme[start + len("```python\n") : readme.index("```", start + 10)]
    code = example[: example.index("\nquery = ")]  # the function, not the request it then sends
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/endpoints.md", "exec"), namespace)  # noqa: S102 - our own documentation
    headers = namespace["signed_headers"](
        "whsec-0123456789abcdef",
        "GET",
        "/api/postback",
        "api_key=k&click_id=c",
        b"",
        timestamp=1700000000,
    )
    message = signing_message("1700000000", "GET", "/api/postback", "api_key=k&click_id=c", b"")
    expected = hmac.new(b"whsec-0123456789abcdef", message, hashlib.sha256).hexdigest()
    assert message == b"1700000000.GET./api/postback?api_key=k&click_id=c."
    assert headers == {"X-Timestamp": "1700000000", "X-Signature": f"sha256={expected}"}
