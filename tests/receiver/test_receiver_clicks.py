"""Clicks: tracking links (GET /t/{slug}), earn-app task clicks, and the track endpoint."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from tests.support.clock import START
from tests.support.ids import uuid_like

EARN = "/api/v1/earn/products/{}/click"


def earn(harness, product: str = "p1", token: str | None = "tok-1", **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return harness.post(EARN.format(product), headers=headers, **kwargs)


# ---------------------------------------------------------------- GET /t/{slug}


def test_link_click_redirects_with_macros_and_params(harness) -> None:
    cid = uuid_like(1)
    ex = harness.get("/t/alpha-1")
    assert ex.status == 302
    assert ex.resp.headers["location"] == (
        f"https://shop.example/land?src=net&uid={cid}&tid={cid}"  # both macros, existing query kept
        f"&click_id={cid}&offer_id=alpha-shop&affiliate_id=aff1"
    )
    rec = ex.record
    assert (rec["kind"], rec["route"], rec["result"], rec["error"]) == ("click", "/t/{slug}", "click", None)
    assert ex.fields["click_id"] == cid
    assert ex.fields["redirect_url"] == ex.resp.headers["location"]
    assert harness.receiver.clicks.get(cid) is not None


def test_link_click_record_fields(harness) -> None:
    ex = harness.get(
        "/t/alpha-1",
        query_string="sub1=a&sub2=b%20c&sub3=&sub4=x%26y&sub5=%E2%9C%93&gclid=G1",
        headers={"User-Agent": "Mozilla/5.0 (test)", "Referer": "https://blog.example/post?id=7",
                 "X-Forwarded-For": "203.0.113.9"},
        remote_addr="198.51.100.7",
    )
    rec, fields = ex.record, ex.fields
    assert rec["remote_addr"] == "198.51.100.7"
    assert rec["forwarded_for"] == "203.0.113.9"
    assert rec["user_agent"] == "Mozilla/5.0 (test)"
    assert rec["referer"] == "https://blog.example/post?id=7"
    assert rec["received_at"] == "2024-01-01T12:00:00.000000Z"
    assert rec["query"] == "sub1=a&sub2=b%20c&sub3=&sub4=x%26y&sub5=%E2%9C%93&gclid=G1"
    assert ex.custom_data == {"sub1": "a", "sub2": "b c", "sub3": "", "sub4": "x&y", "sub5": "✓", "gclid": "G1"}
    assert fields == {
        "click_id": uuid_like(1),
        "source": "link",
        "slug": "alpha-1",
        "offer_id": "alpha-shop",
        "partner_id": "alpha",
        "affiliate_id": "aff1",
        "user_id": None,
        "product_id": None,
        "expires_at": "2024-01-01T14:00:00.000000Z",  # click_ttl_hours = 2
        "redirect_url": ex.resp.headers["location"],
        "offer_currency": "EUR",
        "revenue_share_percent": "70",
        "revenue_share_fixed": None,
    }
    # link params never leak into the redirect: only click_id, offer_id, affiliate_id are added
    assert "sub1" not in ex.resp.headers["location"]


def test_link_click_keeps_fragment_and_never_expires_without_ttl(harness) -> None:
    ex = harness.get("/t/beta-1")
    cid = ex.fields["click_id"]
    assert ex.resp.headers["location"] == (
        f"https://beta.example/app?click_id={cid}&offer_id=beta-app&affiliate_id=aff2#top"
    )
    assert ex.fields["expires_at"] is None
    assert ex.fields["revenue_share_fixed"] == "1.5" and ex.fields["revenue_share_percent"] is None


def test_link_click_ids_are_uuid_v4_by_default(make_harness, data_dir: Path) -> None:
    from receiver.app import new_uuid

    h = make_harness(data_dir, new_click_id=new_uuid)
    ids = [h.link_click("alpha-1") for _ in range(5)]
    assert len(set(ids)) == 5
    for cid in ids:
        parsed = uuid.UUID(cid)
        assert parsed.version == 4 and str(parsed) == cid
    location = h.client.simulate_get("/t/open-1").headers["location"]
    assert parse_qs(urlsplit(location).query)["click_id"][0] != ids[-1]


def test_each_visit_is_one_click(harness) -> None:
    ids = [harness.link_click("open-1") for _ in range(3)]
    assert ids == [uuid_like(1), uuid_like(2), uuid_like(3)]
    assert len(harness.receiver.clicks) == 3


@pytest.mark.parametrize("slug", ["alpha-paused-1", "alpha-pending-1"])
def test_inactive_offer_goes_home_without_a_click(harness, slug: str) -> None:
    before = len(harness.receiver.clicks)
    ex = harness.get(f"/t/{slug}", params={"sub1": "s"})
    assert ex.status == 302
    assert ex.resp.headers["location"] == "https://home.example/"
    assert ex.record["result"] == "offer_inactive"
    assert ex.record["error"] is None
    assert "click_id" not in ex.fields
    assert ex.fields["slug"] == slug and ex.fields["affiliate_id"] == "aff1"
    assert ex.custom_data == {"sub1": "s"}
    assert len(harness.receiver.clicks) == before
    # the id that would have been issued is not a click: a postback for it is refused
    for cid in harness.click_ids.issued:
        assert harness.receiver.clicks.get(cid) is None


def test_inactive_offer_click_is_not_rebuilt_after_restart(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir)
    h.get("/t/alpha-paused-1")
    h.close()
    again = make_harness(data_dir)
    assert len(again.receiver.clicks) == 0


@pytest.mark.parametrize("slug", ["nope", "ALPHA-1", "alpha-1x", "alpha-1.old"])
def test_unknown_slug_is_404_and_logged(harness, slug: str) -> None:
    ex = harness.request("GET", f"/t/{slug}", params={"sub1": "z"})
    assert ex.status == 404
    assert ex.json["ok"] is False and ex.json["error"] == "link_not_found"
    assert "location" not in ex.resp.headers
    assert ex.record["kind"] == "click" and ex.record["error"] == "link_not_found"
    assert ex.record["query"] == "sub1=z"
    assert len(harness.receiver.clicks) == 0


def test_link_wrong_method_is_405_and_logged(harness) -> None:
    ex = harness.post("/t/alpha-1", body="x=1", content_type="application/x-www-form-urlencoded")
    assert ex.status == 405 and ex.json["error"] == "method_not_allowed"
    assert ex.record["body"] == "x=1"
    assert len(harness.receiver.clicks) == 0


def test_link_clicks_survive_a_restart(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir)
    cid = h.link_click("alpha-1")
    h.close()
    again = make_harness(data_dir)
    click = again.receiver.clicks.get(cid)
    assert click is not None and click.offer_id == "alpha-shop" and click.affiliate_id == "aff1"
    assert click.expires_at == START + timedelta(hours=2)
    ok = again.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid})
    assert ok.json == {"ok": True, "result": "recorded"}


# ---------------------------------------------------------------- POST /api/v1/earn/products/{id}/click


def test_earn_click_answer(harness) -> None:
    ex = earn(harness, json={"taskUrl": "https://advertiser.example/offer"})
    cid = uuid_like(1)
    assert ex.status == 201
    assert ex.resp.headers["content-type"].startswith("application/json")
    assert ex.json == {
        "clickId": cid,
        "redirectUrl": (
            f"https://advertiser.example/offer?click_id={cid}"
            f"&postback_url=https%3A%2F%2Frx.example%2Fapi%2Fv1%2Fearn%2Fpostback%3Fclick_id%3D{cid}"
        ),
        "expiresAt": "2024-01-01T13:00:00Z",  # fixed clock + click_ttl_hours = 1
    }
    query = dict(parse_qsl(urlsplit(ex.json["redirectUrl"]).query))
    assert query == {"click_id": cid, "postback_url": f"https://rx.example/api/v1/earn/postback?click_id={cid}"}
    rec = ex.record
    assert (rec["kind"], rec["route"], rec["result"]) == ("click", "/api/v1/earn/products/{product_id}/click", "click")
    assert ex.fields["source"] == "earn"
    assert ex.fields["user_id"] == "u1" and ex.fields["product_id"] == "p1"
    assert ex.fields["offer_id"] == "earn-offer" and ex.fields["partner_id"] == "open"
    assert ex.fields["task_url"] == "https://advertiser.example/offer"
    assert ex.fields["expires_at"] == "2024-01-01T13:00:00.000000Z"
    assert ex.fields["redirect_url"] == ex.json["redirectUrl"]
    assert harness.receiver.clicks.get(cid).user_id == "u1"


def test_earn_click_default_ttl_and_clock(harness) -> None:
    harness.clock.set(START + timedelta(days=3, minutes=30))
    ex = earn(harness, "p2", token="tok-2", json={})
    assert ex.json["expiresAt"] == "2024-01-05T12:30:00Z"  # default click_ttl_hours = 24
    assert ex.json["redirectUrl"].startswith("https://tasks.example/go/?click_id=")
    assert ex.fields["user_id"] == "u2"


@pytest.mark.parametrize("kwargs", [{}, {"json": {}}, {"json": {"taskUrl": None}}, {"body": b""}])
def test_earn_click_default_task_url(harness, kwargs) -> None:
    ex = earn(harness, **kwargs)
    assert ex.status == 201
    assert ex.json["redirectUrl"].startswith(f"https://advertiser.example/offer?click_id={ex.json['clickId']}&")
    assert ex.fields["task_url"] == "https://advertiser.example/offer"


@pytest.mark.parametrize("task_url, prefix", [
    ("https://advertiser.example/offer?ref=app", "https://advertiser.example/offer?ref=app&click_id="),
    ("https://advertiser.example/offer/step-2", "https://advertiser.example/offer/step-2?click_id="),
    ("https://advertiser.example/offer/", "https://advertiser.example/offer/?click_id="),
    ("https://ADVERTISER.example/offer", "https://ADVERTISER.example/offer?click_id="),
])
def test_earn_click_task_url_under_the_product(harness, task_url: str, prefix: str) -> None:
    ex = earn(harness, json={"taskUrl": task_url})
    assert ex.status == 201, ex.json
    assert ex.json["redirectUrl"].startswith(prefix)
    assert ex.fields["task_url"] == task_url


def test_earn_click_fragment_stays_last(harness) -> None:
    ex = earn(harness, json={"taskUrl": "https://advertiser.example/offer#step"})
    url = ex.json["redirectUrl"]
    assert url.endswith("#step") and "click_id=" in url.split("#")[0]


def test_earn_click_task_url_cannot_override_click_id_or_postback_url(harness) -> None:
    forged = "https://advertiser.example/offer?a=1&click_id=someone-else&postback_url=https%3A%2F%2Fevil.example%2Fpb"
    ex = earn(harness, json={"taskUrl": forged})
    assert ex.status == 201
    cid = ex.json["clickId"]
    query = parse_qs(urlsplit(ex.json["redirectUrl"]).query)
    assert query["click_id"] == [cid]
    assert query["postback_url"] == [f"https://rx.example/api/v1/earn/postback?click_id={cid}"]
    assert query["a"] == ["1"]


def test_earn_click_other_body_members_are_custom_data(harness) -> None:
    ex = earn(harness, json={"taskUrl": "https://advertiser.example/offer", "device": "android",
                             "meta": {"app": "1.2"}})
    assert ex.custom_data == {"device": "android", "meta": {"app": "1.2"}}


@pytest.mark.parametrize("task_url", [
    "https://advertiser.example/offerX",  # prefix of the path, not below it
    "https://advertiser.example/offe",
    "https://advertiser.example/",
    "https://advertiser.example/other",
    "https://example.com",  # seed 000's literal example: a different host
    "https://evil.example/offer",
    "https://advertiser.example.evil.example/offer",
    "http://advertiser.example/offer",  # different scheme
    "https://advertiser.example:8443/offer",  # different port
    "//advertiser.example/offer",
    "/offer",
    "https://user@advertiser.example/offer",  # userinfo
    "https://advertiser.example@evil.example/offer",
    "https://advertiser.example\\@evil.example/offer",  # backslash
    "https://advertiser.example/offer\\..\\admin",
    "https://advertiser.example/offer/../admin",  # dot segments resolve outside the path
    "https://advertiser.example/offer/%2e%2e/admin",
    "https://advertiser.example/offer\r\nLocation: https://evil.example/",
    " https://advertiser.example/offer",
    "javascript:alert(1)",
    "",
])
def test_earn_click_task_url_not_under_the_product(harness, task_url: str) -> None:
    ex = earn(harness, json={"taskUrl": task_url})
    assert ex.status == 400, ex.json
    assert ex.json["error"] == "invalid_task_url"
    assert ex.record["error"] == "invalid_task_url"
    assert ex.fields == {"product_id": "p1", "user_id": "u1"}
    assert len(harness.receiver.clicks) == 0


@pytest.mark.parametrize("task_url", [123, ["https://advertiser.example/offer"], {"url": "x"}, True])
def test_earn_click_task_url_must_be_a_string(harness, task_url) -> None:
    ex = earn(harness, json={"taskUrl": task_url})
    assert (ex.status, ex.json["error"]) == (400, "invalid_task_url")


def test_earn_click_product_task_url_with_query(harness) -> None:
    harness.rewrite_config(harness.config_path.read_text().replace(
        'task_url = "https://tasks.example/go/"', 'task_url = "https://tasks.example/go?ref=app"'))
    assert earn(harness, "p2", json={"taskUrl": "https://tasks.example/go?ref=app&x=1"}).status == 201
    assert earn(harness, "p2", json={"taskUrl": "https://tasks.example/go?ref=apple"}).status == 400
    assert earn(harness, "p2", json={"taskUrl": "https://tasks.example/go"}).status == 400


@pytest.mark.parametrize("headers, code", [
    ({}, "token_required"),
    ({"Authorization": ""}, "token_required"),
    ({"Authorization": "Bearer"}, "token_required"),
    ({"Authorization": "Bearer   "}, "token_required"),
    ({"Authorization": "Basic dG9rLTE6"}, "token_required"),
    ({"Authorization": "tok-1"}, "token_required"),
    ({"Authorization": "Bearer tok-9"}, "invalid_token"),
    ({"Authorization": "Bearer TOK-1"}, "invalid_token"),
    ({"Authorization": "Bearer tok-1x"}, "invalid_token"),
])
def test_earn_click_needs_a_known_token(harness, headers, code: str) -> None:
    ex = earn(harness, token=None, headers=headers, json={})
    assert ex.status == 401
    assert ex.json["error"] == code
    assert len(harness.receiver.clicks) == 0


def test_earn_click_bearer_scheme_is_case_insensitive(harness) -> None:
    assert earn(harness, token=None, headers={"Authorization": "bearer tok-1"}, json={}).status == 201


def test_earn_click_unknown_product(harness) -> None:
    ex = earn(harness, "p404", json={})
    assert (ex.status, ex.json["error"]) == (404, "product_not_found")
    assert ex.fields == {"product_id": "p404", "user_id": "u1"}
    # a missing token is refused before the product is looked up
    assert earn(harness, "p404", token=None, json={}).status == 401


@pytest.mark.parametrize("body, content_type", [
    (b"{not json", "application/json"),
    (b'["https://advertiser.example/offer"]', "application/json"),
])
def test_earn_click_bad_body(harness, body: bytes, content_type: str) -> None:
    ex = earn(harness, body=body, content_type=content_type)
    assert (ex.status, ex.json["error"]) == (400, "invalid_body")
    assert len(harness.receiver.clicks) == 0


def test_earn_click_wrong_method(harness) -> None:
    ex = harness.get(EARN.format("p1"), headers={"Authorization": "Bearer tok-1"})
    assert (ex.status, ex.json["error"]) == (405, "method_not_allowed")


# ---------------------------------------------------------------- GET /api/v1/earn/track/{click_id}


def test_track_known_click(harness) -> None:
    cid = harness.earn_click("p1", "tok-2")
    ex = harness.get(f"/api/v1/earn/track/{cid}", params={"screen": "offer_wall"})
    assert ex.status == 204
    assert ex.resp.content == b""
    rec = ex.record
    assert (rec["kind"], rec["route"], rec["result"], rec["error"]) == (
        "track", "/api/v1/earn/track/{click_id}", "tracked", None)
    assert ex.fields == {"click_id": cid, "offer_id": "earn-offer", "partner_id": "open", "user_id": "u2",
                         "product_id": "p1", "affiliate_id": None}
    assert ex.custom_data == {"screen": "offer_wall"}


def test_track_link_click(harness) -> None:
    cid = harness.link_click("alpha-1")
    ex = harness.get(f"/api/v1/earn/track/{cid}")
    assert ex.status == 204 and ex.fields["affiliate_id"] == "aff1"


def test_track_unknown_click(harness) -> None:
    ex = harness.get(f"/api/v1/earn/track/{uuid_like(999)}")
    assert (ex.status, ex.json["error"]) == (404, "click_not_found")
    assert ex.record["kind"] == "track"
    assert ex.fields == {"click_id": uuid_like(999)}


def test_track_wrong_method(harness) -> None:
    cid = harness.earn_click()
    ex = harness.post(f"/api/v1/earn/track/{cid}")
    assert (ex.status, ex.json["error"]) == (405, "method_not_allowed")
