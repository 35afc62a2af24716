"""Every curl / URL example of the five seed documents, sent to a real local receiver.

The receiver runs the demo network (clickledger.demo.write_demo_config) in a real waitress
process; placeholders (PRODUCT_ID, TOKEN, CLICK_ID, YOUR_KEY, sp_live_xxx, clk_xxx, XXXX,
{click_id}...) are replaced by the demo's real ids and keys, and each answer is checked
against the contract, together with the one log record it produced.

Demo partners: acme (key sp_live_acme, seed 003), moustache (key mlk_live_7f3a9c, seed 001),
peerclick (public, seed 002), clickwall (public, campaign cw-1001, seed 004), taskwall
(public earn advertiser, seed 000); users user-token-1..3; products task-1, task-2.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from tests.support.live_server import LiveServer, start_live_server, stop_live_server
from tests.support.network import rewrite_config

pytestmark = pytest.mark.server

ACME_KEY = "sp_live_acme"
MOUSTACHE_KEY = "mlk_live_7f3a9c"
TOKEN = "user-token-1"

RECORDED = {"ok": True, "result": "recorded"}
DUPLICATE = {"ok": True, "result": "duplicate"}
TEST = {"ok": True, "result": "test"}


class Live:
    """Requests to the live receiver; each must append exactly one log record that agrees with it."""

    def __init__(self, server: LiveServer):
        self.server = server
        self.base = server.url
        self.session = requests.Session()
        self.seen = len(server.records())

    def call(self, method: str, url: str, **kwargs: Any) -> tuple[requests.Response, dict[str, Any]]:
        if not url.startswith("http"):
            url = self.base + url
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 10)
        resp = self.session.request(method, url, **kwargs)
        records = self.server.records()
        new, self.seen = records[self.seen:], len(records)
        assert len(new) == 1, f"{method} {url}: expected one new log record, got {len(new)}"
        record = new[0]
        assert record["http_status"] == resp.status_code
        assert record["method"] == method
        if resp.content and resp.headers.get("content-type", "").startswith("application/json"):
            body = resp.json()
            if body.get("ok") is True:
                assert record["result"] == body.get("result", record["result"]) and record["error"] is None
            elif body.get("ok") is False:
                assert record["error"] == body["error"]
        return resp, record

    def get(self, url: str, **kwargs: Any) -> tuple[requests.Response, dict[str, Any]]:
        return self.call("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> tuple[requests.Response, dict[str, Any]]:
        return self.call("POST", url, **kwargs)

    def link_click(self, slug: str) -> str:
        resp, record = self.get(f"/t/{slug}")
        assert resp.status_code == 302
        click_id = parse_qs(urlsplit(resp.headers["Location"]).query)["click_id"][0]
        assert record["fields"]["click_id"] == click_id
        return click_id

    def earn_click(self, product: str = "task-1", task_url: str = "https://advertiser.example/offer") -> dict:
        resp, _ = self.post(f"/api/v1/earn/products/{product}/click",
                            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                            data=f'{{"taskUrl": "{task_url}"}}')
        assert resp.status_code == 201, resp.text
        return resp.json()


@pytest.fixture
def live(live_server: LiveServer) -> Live:
    return Live(live_server)


def error_of(resp: requests.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]


def is_uuid4(value: str) -> bool:
    parsed = uuid.UUID(value)
    return parsed.version == 4 and str(parsed) == value


# ---------------------------------------------------------------- seed 000: earn app (click tracking & S2S)


def test_seed000_generate_click(live: Live) -> None:
    """curl -X POST http://localhost:3000/api/v1/earn/products/PRODUCT_ID/click -H "Authorization: Bearer TOKEN"
    -H "Content-Type: application/json" -d '{"taskUrl": "..."}' (the product's own task URL)."""
    before = datetime.now(UTC)
    resp, record = live.post(
        "/api/v1/earn/products/task-1/click",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        data='{"taskUrl": "https://advertiser.example/offer"}',
    )
    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == {"clickId", "redirectUrl", "expiresAt"}
    click_id = body["clickId"]
    assert is_uuid4(click_id)
    postback_url = f"{live.base}/api/v1/earn/postback?click_id={click_id}"
    assert body["redirectUrl"] == (
        f"https://advertiser.example/offer?click_id={click_id}&postback_url={quote(postback_url, safe='')}"
    )
    expires = datetime.strptime(body["expiresAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(hours=24) - timedelta(seconds=2) <= expires <= datetime.now(UTC) + timedelta(hours=24)
    assert record["fields"]["user_id"] == "u1" and record["fields"]["product_id"] == "task-1"


def test_seed000_literal_example_task_url_is_refused(live: Live) -> None:
    """The seed's literal body {"taskUrl": "https://example.com"} is not under task-1's task_url: 400."""
    resp, _ = live.post("/api/v1/earn/products/task-1/click",
                        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                        data='{"taskUrl": "https://example.com"}')
    assert error_of(resp) == (400, "invalid_task_url")
    resp, _ = live.post("/api/v1/earn/products/task-2/click",  # seed body shape, task-2's URL
                        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                        data='{"taskUrl": "https://advertiser.example/offer"}')
    assert error_of(resp) == (400, "invalid_task_url")


def test_seed000_placeholders_unfilled(live: Live) -> None:
    resp, _ = live.post("/api/v1/earn/products/PRODUCT_ID/click",
                        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                        data='{"taskUrl": "https://advertiser.example/offer"}')
    assert error_of(resp) == (404, "product_not_found")
    resp, _ = live.post("/api/v1/earn/products/task-1/click",
                        headers={"Authorization": "Bearer TOKEN", "Content-Type": "application/json"},
                        data='{"taskUrl": "https://advertiser.example/offer"}')
    assert error_of(resp) == (401, "invalid_token")
    resp, _ = live.post("/api/v1/earn/products/task-1/click", headers={"Content-Type": "application/json"},
                        data='{"taskUrl": "https://advertiser.example/offer"}')
    assert error_of(resp) == (401, "token_required")


def test_seed000_default_task_url(live: Live) -> None:
    resp, _ = live.post("/api/v1/earn/products/task-2/click", headers={"Authorization": "Bearer user-token-2"})
    assert resp.status_code == 201
    assert resp.json()["redirectUrl"].startswith("https://advertiser.example/survey?click_id=")


def test_seed000_postback(live: Live) -> None:
    """curl -X POST "http://localhost:3000/api/v1/earn/postback?click_id=CLICK_ID" -H "Content-Type: application/json"
    -d '{"amount": 50.00, "status": "completed", "transactionId": "test_123"}', sent twice."""
    click_id = live.earn_click()["clickId"]
    body = '{\n  "amount": 50.00,\n  "status": "completed",\n  "transactionId": "test_123"\n}'
    url = f"/api/v1/earn/postback?click_id={click_id}"
    resp, record = live.post(url, headers={"Content-Type": "application/json"}, data=body)
    assert (resp.status_code, resp.json()) == (200, RECORDED)
    f = record["fields"]
    assert (f["dialect"], f["click_id"], f["transaction_id"]) == ("earn", click_id, "test_123")
    assert (f["status_raw"], f["status"]) == ("completed", "approved")
    assert Decimal(f["amount"]) == Decimal("50.00")
    assert (f["currency"], f["user_id"], f["product_id"], f["partner_id"]) == ("USD", "u1", "task-1", "taskwall")
    resp, record = live.post(url, headers={"Content-Type": "application/json"}, data=body)
    assert (resp.status_code, resp.json()) == (200, DUPLICATE)  # "One click = One conversion"


def test_seed000_advertiser_calls_the_postback_url_from_the_redirect(live: Live) -> None:
    """The advertiser calls exactly the postback_url it received in redirectUrl."""
    redirect = live.earn_click()["redirectUrl"]
    query = parse_qs(urlsplit(redirect).query)
    postback_url = query["postback_url"][0]
    assert postback_url.startswith(live.base + "/api/v1/earn/postback?click_id=")
    resp, record = live.post(postback_url, json={"amount": 1.25, "status": "completed", "transactionId": "t-1"})
    assert resp.json() == RECORDED
    assert record["fields"]["click_id"] == query["click_id"][0]


def test_seed000_track_and_unknown_click(live: Live) -> None:
    click_id = live.earn_click()["clickId"]
    resp, record = live.get(f"/api/v1/earn/track/{click_id}")
    assert resp.status_code == 204 and record["result"] == "tracked"
    resp, _ = live.get("/api/v1/earn/track/CLICK_ID")
    assert error_of(resp) == (404, "click_not_found")
    resp, _ = live.post("/api/v1/earn/postback?click_id=CLICK_ID", json={"amount": 50.00, "status": "completed"})
    assert error_of(resp) == (404, "click_not_found")


# ---------------------------------------------------------------- seed 001: publisher network (key in the path)


def test_seed001_test_postback(live: Live) -> None:
    """curl ".../postback/YOUR_KEY?click_id=TEST-123&status=test&payout=1.00" """
    resp, record = live.get(f"/postback/{MOUSTACHE_KEY}?click_id=TEST-123&status=test&payout=1.00")
    assert (resp.status_code, resp.json()) == (200, TEST)
    assert record["fields"]["key_partner_id"] == "moustache"
    resp, _ = live.get("/postback/YOUR_KEY?click_id=TEST-123&status=test&payout=1.00")
    assert error_of(resp) == (403, "invalid_api_key")


def test_seed001_system_status(live: Live) -> None:
    """curl ".../api/analytics/postback/test" """
    resp, record = live.get("/api/analytics/postback/test")
    assert resp.status_code == 200 and resp.json()["ok"] is True
    assert record["kind"] == "health"


def test_seed001_example_postback_url_with_macros_filled(live: Live) -> None:
    """.../postback/YOUR_KEY?click_id={click_id}&status={status}&payout={payout}&offer_id={offer_id}
    &transaction_id={transaction_id}"""
    click_id = live.link_click("moustache-aff1")
    url = (f"/postback/{MOUSTACHE_KEY}?click_id={click_id}&status=approved&payout=2.50"
           f"&offer_id=SURVEY-77&transaction_id=MT-1")
    resp, record = live.get(url)
    assert (resp.status_code, resp.json()) == (200, RECORDED)
    f = record["fields"]
    assert (f["dialect"], f["key_source"], f["amount"], f["transaction_id"]) == ("publisher", "path", "2.50", "MT-1")
    assert f["offer_id"] == "moustache-survey"
    assert record["custom_data"] == {"offer_id": "SURVEY-77"}
    resp, _ = live.get(url)
    assert resp.json() == DUPLICATE
    # with only the click id (the one required parameter)
    resp, record = live.get(f"/postback/{MOUSTACHE_KEY}?click_id={click_id}")
    assert resp.json() == RECORDED and record["fields"]["transaction_id"] == click_id


def test_seed001_macros_left_unfilled(live: Live) -> None:
    resp, record = live.get(f"/postback/{MOUSTACHE_KEY}?click_id={{click_id}}&status={{status}}&payout=1")
    assert error_of(resp) == (404, "click_not_found")
    assert record["fields"]["click_id"] == "{click_id}"


def test_seed001_survey_custom_data_by_post(live: Live) -> None:
    click_id = live.link_click("moustache-aff1")
    resp, record = live.post(f"/postback/{MOUSTACHE_KEY}", json={
        "click_id": click_id, "status": "approved", "payout": "0.80", "survey_id": "SV-1",
        "user_id": "member-9", "answers": {"age": "25-34", "likes": ["a", "b"]}, "transaction_id": "MT-2"})
    assert resp.json() == RECORDED
    assert record["custom_data"] == {"survey_id": "SV-1", "user_id": "member-9",
                                     "answers": {"age": "25-34", "likes": ["a", "b"]}}


# ---------------------------------------------------------------- seed 002: PeerClick (cid, payout, txid...)


def test_seed002_postback(live: Live) -> None:
    resp, record = live.get("/t/peer-aff3")
    location = resp.headers["Location"]
    click_id = record["fields"]["click_id"]
    assert location == (f"https://apps.example/install?clickid={click_id}"  # the {clickid} macro
                        f"&click_id={click_id}&offer_id=peer-app&affiliate_id=aff3")
    url = f"/postback?cid={click_id}&payout=3.20&status=approved&txid=PC-1"
    resp, record = live.get(url)
    assert (resp.status_code, resp.json()) == (200, RECORDED)
    f = record["fields"]
    assert (f["dialect"], f["amount"], f["status"], f["transaction_id"], f["currency"]) == (
        "peerclick", "3.20", "approved", "PC-1", "EUR")
    resp, _ = live.get(url)
    assert resp.json() == DUPLICATE


def test_seed002_all_parameters(live: Live) -> None:
    click_id = live.link_click("peer-aff3")
    resp, record = live.get(f"/postback?cid={click_id}&payout=1&status=pending&txid=PC-2&currency=usd"
                            "&conversion_id=cv-1&param1=p1&param2=p2&event1=4&event2=0.5")
    assert resp.json() == RECORDED
    assert (record["fields"]["currency"], record["fields"]["status"]) == ("USD", "pending")
    assert record["custom_data"] == {"conversion_id": "cv-1", "param1": "p1", "param2": "p2", "event1": "4",
                                     "event2": "0.5"}


def test_seed002_missing_cid(live: Live) -> None:
    resp, _ = live.get("/postback?payout=1&status=approved")
    assert error_of(resp) == (400, "click_id_required")


# ---------------------------------------------------------------- seed 003: tracking links + /api/postback


def test_seed003_tracking_link(live: Live) -> None:
    resp, record = live.get("/t/acme-aff1", headers={"User-Agent": "SeedBrowser/1", "Referer": "https://aff.example/"})
    assert resp.status_code == 302
    click_id = record["fields"]["click_id"]
    assert is_uuid4(click_id)
    assert resp.headers["Location"] == (
        f"https://shop.example/land?src=net&click_id={click_id}&offer_id=acme-shop&affiliate_id=aff1")
    assert (record["user_agent"], record["referer"], record["remote_addr"]) == (
        "SeedBrowser/1", "https://aff.example/", "127.0.0.1")


def test_seed003_inactive_offer_goes_home(live: Live) -> None:
    resp, record = live.get("/t/acme-winter-aff1")
    assert resp.status_code == 302 and resp.headers["Location"] == "https://network.example/"
    assert record["result"] == "offer_inactive" and "click_id" not in record["fields"]
    resp, _ = live.get("/t/no-such-link")
    assert error_of(resp) == (404, "link_not_found")


def test_seed003_curl_with_api_key(live: Live) -> None:
    """curl ".../api/postback?api_key=sp_live_xxx&click_id=clk_xxx&status=confirmed&amount=99&commission=10" """
    click_id = live.link_click("acme-aff1")
    resp, record = live.get(
        f"/api/postback?api_key={ACME_KEY}&click_id={click_id}&status=confirmed&amount=99&commission=10")
    assert (resp.status_code, resp.json()) == (200, RECORDED)
    f = record["fields"]
    assert (f["dialect"], f["amount"], f["commission"], f["currency"], f["status"]) == (
        "network", "99", "10", "USD", "approved")
    assert (f["partner_id"], f["affiliate_id"], f["transaction_id"]) == ("acme", "aff1", click_id)
    # the literal placeholders: an unknown key
    resp, _ = live.get("/api/postback?api_key=sp_live_xxx&click_id=clk_xxx&status=confirmed&amount=99&commission=10")
    assert error_of(resp) == (403, "invalid_api_key")


def test_seed003_node_fetch_with_currency(live: Live) -> None:
    click_id = live.link_click("acme-aff2")
    resp, record = live.get(f"/api/postback?api_key={ACME_KEY}&click_id={click_id}&status=confirmed"
                            "&amount=120.50&commission=12&currency=USD")
    assert resp.json() == RECORDED
    assert (record["fields"]["currency_source"], record["fields"]["affiliate_id"]) == ("param", "aff2")


def test_seed003_node_fetch_as_printed(live: Live) -> None:
    """The seed prints `"&commission=" + commissionAmount + "¤cy=USD"`: "&curren" became "¤", eating
    the "&". Taken literally, commission is "1¤cy=USD", not a number: refused, and not counted."""
    click_id = live.link_click("acme-aff1")
    url = f"/api/postback?api_key={ACME_KEY}&click_id={click_id}&status=confirmed&amount=5&commission=1¤cy=USD"
    resp, record = live.get(url)
    assert error_of(resp) == (400, "invalid_commission")
    assert record["fields"]["click_id"] == click_id
    resp, _ = live.get(url.replace("¤cy", "&currency"))  # as the author meant it
    assert resp.json() == RECORDED


def test_seed003_x_api_key_header(live: Live) -> None:
    """fetch(".../api/postback?click_id=" + clickId + "&status=confirmed", {method: "POST", headers: {"X-API-Key": ...}})"""
    click_id = live.link_click("acme-aff1")
    resp, record = live.post(f"/api/postback?click_id={click_id}&status=confirmed", headers={"X-API-Key": ACME_KEY})
    assert (resp.status_code, resp.json()) == (200, RECORDED)
    assert record["fields"]["key_source"] == "header"
    resp, _ = live.post(f"/api/postback?click_id={click_id}&status=confirmed", headers={"X-API-Key": "nope"})
    assert error_of(resp) == (403, "invalid_api_key")


def test_seed003_test_your_setup(live: Live) -> None:
    """.../api/postback?api_key=YOUR_API_KEY&click_id=YOUR_CLICK_ID&status=confirmed&amount=10&commission=1"""
    click_id = live.link_click("acme-aff1")
    resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&click_id={click_id}&status=confirmed&amount=10&commission=1")
    assert resp.json() == RECORDED
    resp, _ = live.get("/api/postback?api_key=YOUR_API_KEY&click_id=YOUR_CLICK_ID&status=confirmed&amount=10")
    assert error_of(resp) == (403, "invalid_api_key")


def test_seed003_troubleshooting_errors(live: Live) -> None:
    click_id = live.link_click("acme-aff1")
    resp, record = live.get(f"/api/postback?click_id={click_id}&status=confirmed&amount=10")
    assert error_of(resp) == (401, "api_key_required")
    assert record["fields"]["click_id"] == click_id
    resp, _ = live.get(f"/api/postback?api_key=sp_live_wrong&click_id={click_id}&status=confirmed")
    assert error_of(resp) == (403, "invalid_api_key")
    resp, record = live.get(f"/api/postback?api_key={MOUSTACHE_KEY}&click_id={click_id}&status=confirmed")
    assert error_of(resp) == (403, "invalid_api_key")  # a real key, but not the offer owner's
    assert record["fields"]["key_partner_id"] == "moustache"
    resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&click_id=clk_xxx&status=confirmed")
    assert error_of(resp) == (404, "click_not_found")
    resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&status=confirmed")
    assert error_of(resp) == (400, "click_id_required")
    resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&click_id=&status=confirmed")
    assert error_of(resp) == (400, "click_id_required")
    resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&cid={click_id}&status=confirmed")
    assert resp.json() == RECORDED  # cid is click_id


def test_seed003_postback_without_api_prefix(live: Live) -> None:
    """The seed's "common mistake": /postback instead of /api/postback. Here /postback is a postback
    route too (seed 002's dialect), so the conversion is never silently dropped: it is recorded,
    or refused with a code the partner can act on."""
    click_id = live.link_click("acme-aff1")
    query = f"click_id={click_id}&status=confirmed&amount=10&commission=1"
    resp, _ = live.get(f"/postback?{query}")
    assert error_of(resp) == (401, "api_key_required")
    resp, record = live.get(f"/postback?api_key={ACME_KEY}&{query}")
    assert (resp.status_code, resp.json()) == (200, RECORDED)
    assert record["fields"]["dialect"] == "peerclick" and record["fields"]["partner_id"] == "acme"
    resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&{query}")
    assert resp.json() == DUPLICATE  # the same conversion, whichever URL carried it
    # a path that is no endpoint at all is a logged 404, never a 200
    resp, record = live.get(f"/api/postbacks?api_key={ACME_KEY}&{query}")
    assert error_of(resp) == (404, "not_found")
    assert record["kind"] == "unrouted" and record["fields"]["click_id"] == click_id


def test_seed003_idempotency_and_final_status(live: Live) -> None:
    click_id = live.link_click("acme-aff1")
    base = f"/api/postback?api_key={ACME_KEY}&click_id={click_id}"
    assert live.get(f"{base}&status=pending&transaction_id=ord-1&amount=40")[0].json() == RECORDED
    resp, record = live.get(f"{base}&status=confirmed&transaction_id=ord-1&amount=40")
    assert resp.json() == DUPLICATE  # status is final at first insert
    assert live.get(f"{base}&status=confirmed&txn=ord-2&amount=15")[0].json() == RECORDED  # an upsell
    assert live.get(f"{base}&status=confirmed&order_id=ord-2")[0].json() == DUPLICATE
    assert live.get(f"{base}&status=confirmed")[0].json() == RECORDED  # transaction id = click id
    assert live.get(f"{base}&status=confirmed")[0].json() == DUPLICATE


# ---------------------------------------------------------------- seed 004: ClickWall advertiser postback


def test_seed004_advertiser_postback(live: Live) -> None:
    """https://clickwall.net/postback/advertiser?campaign_id=XXXX&click_id={click_id}"""
    resp, record = live.get("/t/cw-aff2")
    click_id = record["fields"]["click_id"]
    assert resp.headers["Location"] == (
        f"https://game.example/signup?click_id={click_id}&offer_id=cw-1001&affiliate_id=aff2")
    url = f"/postback/advertiser?campaign_id=cw-1001&click_id={click_id}"
    resp, record = live.get(url)
    assert (resp.status_code, resp.json()) == (200, RECORDED)
    f = record["fields"]
    assert (f["dialect"], f["campaign_id"], f["currency"], f["partner_id"]) == ("advertiser", "cw-1001", "GBP",
                                                                                 "clickwall")
    resp, _ = live.get(url)
    assert resp.json() == DUPLICATE  # "triggered only once per conversion"


def test_seed004_rejections(live: Live) -> None:
    click_id = live.link_click("cw-aff2")
    resp, _ = live.get(f"/postback/advertiser?campaign_id=XXXX&click_id={click_id}")
    assert error_of(resp) == (403, "campaign_mismatch")
    resp, _ = live.get(f"/postback/advertiser?click_id={click_id}")
    assert error_of(resp) == (400, "campaign_id_required")
    resp, _ = live.get("/postback/advertiser?campaign_id=cw-1001&click_id={click_id}")
    assert error_of(resp) == (404, "click_not_found")
    resp, _ = live.get("/postback/advertiser?campaign_id=cw-1001")
    assert error_of(resp) == (400, "click_id_required")
    other = live.link_click("peer-aff3")
    resp, _ = live.get(f"/postback/advertiser?campaign_id=cw-1001&click_id={other}")
    assert error_of(resp) == (403, "campaign_mismatch")
    # nothing above counted: the first valid postback is recorded
    resp, _ = live.get(f"/postback/advertiser?campaign_id=cw-1001&click_id={click_id}&payout=2")
    assert resp.json() == RECORDED


# ---------------------------------------------------------------- health, and reload on a real server


def test_healthz(live: Live) -> None:
    resp, record = live.get("/healthz")
    assert resp.status_code == 200 and resp.json()["log"] == "writable"
    assert record["kind"] == "health"


def test_regenerated_key_stops_working_at_once(tmp_path) -> None:
    """Seed 003: "regenerating it in Settings invalidates the old one immediately" (config reload)."""
    server = start_live_server(tmp_path / "data")
    try:
        live = Live(server)
        click_id = live.link_click("acme-aff1")
        resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&click_id={click_id}&txn=1")
        assert resp.json() == RECORDED
        config = server.data_dir / "config.toml"
        rewrite_config(config, config.read_text().replace(f'api_key = "{ACME_KEY}"', 'api_key = "sp_live_acme_v2"'))
        resp, _ = live.get(f"/api/postback?api_key={ACME_KEY}&click_id={click_id}&txn=2")
        assert error_of(resp) == (403, "invalid_api_key")
        resp, _ = live.get(f"/api/postback?api_key=sp_live_acme_v2&click_id={click_id}&txn=2")
        assert resp.json() == RECORDED
    finally:
        stop_live_server(server)
    assert server.proc.returncode == 0


def test_restart_keeps_clicks_and_conversions(tmp_path) -> None:
    data = tmp_path / "data"
    server = start_live_server(data)
    try:
        live = Live(server)
        click_id = live.link_click("acme-aff1")
        assert live.get(f"/api/postback?api_key={ACME_KEY}&click_id={click_id}")[0].json() == RECORDED
    finally:
        stop_live_server(server)
    server = start_live_server(data)  # the demo config again, on a new port
    try:
        live = Live(server)
        assert live.get(f"/api/postback?api_key={ACME_KEY}&click_id={click_id}")[0].json() == DUPLICATE
        assert live.get(f"/api/postback?api_key={ACME_KEY}&click_id={click_id}&txn=2")[0].json() == RECORDED
    finally:
        stop_live_server(server)
