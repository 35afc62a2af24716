"""Redirect safety: tracking links and earn clicks only ever send visitors to configured URLs.

- An earn taskUrl that is not under the product's task_url (other host, userinfo,
  scheme-relative, backslashes, control characters, dot segments, percent-encoded and
  unicode look-alikes...) is refused with 400 `invalid_task_url`, and logged once.
- A tracking link slug with CR/LF or encoded slashes is a logged 404, never a redirect.
- For any slug and any query, every 302 points at the link's configured offer (or the
  homepage), and no request parameter ever reaches the Location header.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.contract.framing import check_line, segment_paths
from tests.support.harness import Harness

TASK_URL = "https://advertiser.example/offer"  # product p1 of the test config

EVIL_TASK_URLS = [
    "//evil.example",
    "//evil.example/offer",
    "/\\evil.example",
    "\\\\evil.example/offer",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)//https://advertiser.example/offer",
    "data:text/html,<script>alert(1)</script>",
    "https://advertiser.example/offer\r\nLocation: https://evil.example",
    "https://advertiser.example/offer\nSet-Cookie: a=b",
    "https://advertiser.example/offer\t",
    " https://advertiser.example/offer",
    "https://advertiser.example@evil.example/offer",
    "https://advertiser.example:443@evil.example/offer",
    "https://user:pass@advertiser.example/offer",
    "https://advertiser.example.evil.example/offer",
    "https://evil.example/https://advertiser.example/offer",
    "https://evil.example?https://advertiser.example/offer",
    "https://advertiser.example/offerX",
    "https://advertiser.example/offer/..",
    "https://advertiser.example/offer/../../evil",
    "HTTPS://ADVERTISER.EXAMPLE/offer/../../evil",
    "https://advertiser.example/offer/%2e%2e/%2e%2e/evil",
    "https://advertiser.example/offer/.%2E/evil",
    "https://advertiser.example/offer%2f..%2f..%2fevil",
    "https://advertiser.example/offer%0d%0aLocation:%20https://evil.example",
    "https://advertiser.example/offer%0aLocation:%20https://evil.example",
    "https://advertiser.example/offer%2f%2fevil.example",
    "https://advertiser.example/offer%5c..%5cevil",
    "https://advertiser.example%2f%2fevil.example/offer",
    "https://advertiser.example%5cevil.example/offer",
    "https:%2f%2fevil.example/offer",
    "%2f%2fevil.example/offer",
    "https://advertiser.example\\@evil.example/offer",
    "https:/\\evil.example/offer",
    "https:advertiser.example/offer",
    "http://advertiser.example/offer",
    "ftp://advertiser.example/offer",
    "https://advertiser.example:8443/offer",
    "https://advertiser.example./offer",
    # unicode look-alikes of the host, and characters that NFKC-normalise to / # @ :
    "https://аdvertiser.example/offer",  # Cyrillic a
    "https://advertiser.exаmple/offer",
    "https://ａdvertiser.example/offer",  # fullwidth a
    "https://advertiser。example/offer",  # ideographic full stop
    "https://advertiser.example／evil.example/offer",  # fullwidth solidus
    "https://advertiser.example＃@evil.example/offer",  # fullwidth number sign
    "https://advertiser.example﹫evil.example/offer",  # small commercial at
    "https://evil.example∕advertiser.example/offer",  # division slash
    "https://advertiser.example\u200b/offer",  # zero-width space
    "https://advertiser.example\u2028/offer",
    "https://[advertiser.example/offer",  # an unterminated IPv6 literal
    "https://advertiser.example]/offer",
    "https://advertiser.example/offer\x00",
    "https://advertiser.example/offer\x7f",
    "",
]


@pytest.mark.parametrize("task_url", EVIL_TASK_URLS, ids=[repr(u)[1:40] for u in EVIL_TASK_URLS])
def test_earn_task_url_outside_the_product_is_refused_and_logged(harness: Harness, task_url: str) -> None:
    ex = harness.post("/api/v1/earn/products/p1/click", headers={"Authorization": "Bearer tok-1"},
                      json={"taskUrl": task_url})  # asserts exactly one record matching the answer
    assert (ex.status, ex.json["error"]) == (400, "invalid_task_url"), ex.resp.text
    assert "location" not in ex.resp.headers
    assert ex.record["result"] is None and "click_id" not in ex.fields
    assert len(harness.receiver.clicks) == 0


@pytest.mark.parametrize("task_url", [
    "https://advertiser.example/offer",
    "https://advertiser.example/offer/",
    "https://advertiser.example/offer/step-2?x=1#frag",
    "HTTPS://ADVERTISER.EXAMPLE/offer",
    "https://advertiser.example/offer?click_id=forged&postback_url=https://evil.example",
])
def test_earn_task_url_under_the_product_is_a_click_to_that_url(harness: Harness, task_url: str) -> None:
    ex = harness.post("/api/v1/earn/products/p1/click", headers={"Authorization": "Bearer tok-1"},
                      json={"taskUrl": task_url})
    assert ex.status == 201, ex.resp.text
    redirect = ex.json["redirectUrl"]
    parts = urlsplit(redirect)
    assert (parts.scheme.lower(), parts.netloc.lower()) == ("https", "advertiser.example")
    assert parts.path.startswith("/offer")
    query = parse_qsl(parts.query)
    assert [v for k, v in query if k == "click_id"] == [ex.json["clickId"]]  # a forged one is replaced
    assert [v for k, v in query if k == "postback_url"] == [
        f"https://rx.example/api/v1/earn/postback?click_id={ex.json['clickId']}"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(task_url=st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, b: a + b, st.sampled_from(["https://advertiser.example", "https://advertiser.example/offer",
                                                   "HTTPS://advertiser.example/offer/", "//", "https:"]),
              st.text(max_size=40)),
))
def test_any_task_url_is_either_refused_or_under_the_product(harness: Harness, task_url: str) -> None:
    resp = harness.raw("POST", "/api/v1/earn/products/p1/click", headers={"Authorization": "Bearer tok-1"},
                       json={"taskUrl": task_url})
    fresh = harness.log.new()
    assert len(fresh) == 1 and fresh[0]["http_status"] == resp.status_code
    assert resp.status_code in (201, 400), (task_url, resp.status_code, resp.text)
    if resp.status_code == 400:
        assert resp.json["error"] == "invalid_task_url"
        return
    parts = urlsplit(resp.json["redirectUrl"])
    assert (parts.scheme.lower(), parts.netloc.lower()) == ("https", "advertiser.example"), task_url
    assert parts.path == "/offer" or parts.path.startswith("/offer/")
    assert not any(ord(c) <= 0x20 or c == "\\" for c in resp.json["redirectUrl"])


# ---------------------------------------------------------------- tracking links


@pytest.mark.parametrize("path", [
    "/t/alpha-1\r\nLocation: https://evil.example",
    "/t/alpha-1%0d%0aLocation:%20https://evil.example",
    "/t/alpha-1%0aLocation:%20https://evil.example",
    "/t/%0d%0a",
    "/t/alpha-1%2f%2fevil.example",
    "/t/alpha-1%2Fevil.example",
    "/t/%2f%2fevil.example",
    "/t/alpha-1%5cevil.example",
    "/t/alpha-1%00",
    "/t/alpha-1\u2028",
    "/t/alpha-1%e2%80%a8",
    "/t/%ff%fe",
])
def test_a_slug_with_control_characters_or_encoded_slashes_is_a_logged_404(harness: Harness, path: str) -> None:
    resp = harness.raw("GET", path)
    fresh = harness.log.new()
    assert resp.status_code == 404, (path, resp.status_code, resp.headers)
    assert "location" not in resp.headers
    assert len(fresh) == 1 and fresh[0]["http_status"] == 404
    assert fresh[0]["error"] in ("link_not_found", "not_found")
    assert len(harness.receiver.clicks) == 0


def expected_target(harness: Harness, slug: str) -> tuple[str, str, set[str]]:
    """(scheme, host, query names) a 302 of this slug may carry: the offer's, or the homepage's."""
    config = harness.receiver.config
    link = config.links[slug]
    offer = config.offers[link.offer]
    url = offer.url if offer.status == "active" else config.homepage
    parts = urlsplit(url)
    names = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if offer.status == "active":
        names |= {"click_id", "offer_id", "affiliate_id"}
    return parts.scheme, parts.netloc, names


NASTY = st.text(alphabet=st.sampled_from(list("ab-_/\\?#&=%.:@\r\n\t \x00\u2028\u0085é日")) | st.characters(codec="utf-8"),
                max_size=16)
SLUGS = st.sampled_from(["alpha-1", "alpha-paused-1", "alpha-pending-1", "beta-1", "open-1", "camp-a",
                         "hashed-1"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slug=st.one_of(SLUGS, NASTY, st.builds(lambda s, x: s + x, SLUGS, NASTY)),
       encode=st.booleans(),
       params=st.lists(st.tuples(st.sampled_from(["sub1", "sub2", "sub5", "click_id", "offer_id", "url",
                                                  "redirect", "next", "Location"]) | NASTY, NASTY),
                       max_size=5))
def test_every_302_goes_to_the_configured_offer_and_never_carries_request_input(
        harness: Harness, slug: str, encode: bool, params: list[tuple[str, str]]) -> None:
    raw_slug = quote(slug, safe="") if encode else slug.replace("?", "%3F").replace("#", "%23")
    resp = harness.raw("GET", f"/t/{raw_slug}", query_string=urlencode(params))
    fresh = harness.log.new()
    assert len(fresh) == 1, "every request is exactly one record"
    record = fresh[0]
    assert record["http_status"] == resp.status_code
    assert resp.status_code in (302, 404), resp.status_code
    location = resp.headers.get("location")
    if resp.status_code == 404:
        assert location is None
        return
    assert not any(ord(c) <= 0x20 or c == "\\" for c in location), location
    logged_slug = record["fields"]["slug"]
    scheme, host, names = expected_target(harness, logged_slug)
    assert location.startswith(f"{scheme}://{host}/"), (slug, location)
    query_names = {k for k, _ in parse_qsl(urlsplit(location).query, keep_blank_values=True)}
    assert query_names <= names, f"request input reached the Location: {query_names - names}"
    # nothing of the request is forwarded: the Location is the slug's clean Location,
    # click id aside
    reference = harness.raw("GET", f"/t/{quote(logged_slug, safe='')}")
    ref_record = harness.log.one_new()
    assert reference.status_code == 302
    assert location.replace(record["fields"].get("click_id") or "-", "CID") == reference.headers[
        "location"].replace(ref_record["fields"].get("click_id") or "-", "CID")
    if record["result"] == "click":
        click_id = record["fields"]["click_id"]
        assert [v for k, v in parse_qsl(urlsplit(location).query) if k == "click_id"] == [click_id]
    # issue 12: a name sent more than once keeps the list of its values (it kept only the first)
    sent: dict[str, list[str]] = {}
    for name, value in parse_qsl(urlencode(params), keep_blank_values=True):
        sent.setdefault(name, []).append(value)
    assert record["custom_data"] == {name: values if len(values) > 1 else values[0] for name, values in sent.items()}


# ---------------------------------------------------------------- the same on a real server


def raw_request(url: str, target: bytes) -> tuple[bytes, bytes]:
    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.server
@pytest.mark.parametrize("target, status", [
    (b"/t/acme-aff1%0d%0aLocation:%20https://evil.example", b"404"),
    (b"/t/acme-aff1%2f%2fevil.example", b"404"),
    (b"/t/acme-aff1?sub1=%0d%0aLocation:%20https://evil.example&sub2=%0aSet-Cookie:%20a=b", b"302"),
    (b"/t/acme-aff1?url=https://evil.example&redirect=//evil.example", b"302"),
    (b"/t/acme-winter-aff1?next=%0d%0aLocation:%20https://evil.example", b"302"),
])
def test_real_server_headers_carry_no_injected_line(live_server: Any, target: bytes, status: bytes) -> None:
    before = len(live_server.records())
    head, _ = raw_request(live_server.url, target)
    lines = head.split(b"\r\n")
    assert lines[0].split(b" ")[1] == status, lines[0]
    assert not any(b"evil" in line or line.lower().startswith(b"set-cookie") for line in lines), lines
    locations = [line for line in lines if line.lower().startswith(b"location:")]
    if status == b"302":
        assert len(locations) == 1
        assert locations[0].split(b" ", 1)[1].startswith((b"https://shop.example/", b"https://network.example/"))
    else:
        assert locations == []
    new = live_server.records()[before:]
    assert len(new) == 1 and new[0]["http_status"] == int(status)
    last_segment = segment_paths(live_server.data_dir / "log")[-1]
    assert check_line(last_segment.read_bytes().splitlines()[-1]) is not None
