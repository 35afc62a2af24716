"""Traffic that makes every kind of log record the receiver writes, accepted and refused.

`send_every_kind(harness)` drives the app of a `harness` (tests/support/harness.py, over the
test network of tests/support/network.py) through every route: clicks of every kind and
refusal, track events, postbacks of every dialect (recorded, duplicate, status update, test,
refused at each step), a wrong method, an unrouted path, the health check and the OpenAPI
document. The clock and ids are the harness's, so the same traffic writes the same bytes
every time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

FX_RATES = "date,currency,rate\n2023-12-01,EUR,1.1\n2023-12-01,GBP,1.25\n"


def send_every_kind(harness: Any, profiles: bool = True) -> dict[str, Any]:
    """Send the traffic; {label: Exchange} of every request, in the order sent. `profiles`: with
    the postbacks of the partner with a profile (False: the seed dialects' traffic alone)."""
    sent: dict[str, Any] = {}

    def get(label: str, path: str, **kwargs: Any) -> Any:
        harness.clock.advance(seconds=7)
        sent[label] = exchange = harness.get(path, **kwargs)
        return exchange

    def post(label: str, path: str, **kwargs: Any) -> Any:
        harness.clock.advance(seconds=7)
        sent[label] = exchange = harness.post(path, **kwargs)
        return exchange

    def request(label: str, method: str, path: str, **kwargs: Any) -> Any:
        harness.clock.advance(seconds=7)
        sent[label] = exchange = harness.request(method, path, **kwargs)
        return exchange

    bearer = {"Authorization": "Bearer tok-1"}
    # clicks: every link, an inactive offer, an unknown link; earn clicks and their refusals
    alpha = get("link click", "/t/alpha-1", params={"sub1": "a", "sub2": "b"}).fields["click_id"]
    beta = get("link click beta", "/t/beta-1").fields["click_id"]
    opened = get("link click open", "/t/open-1").fields["click_id"]
    camp = get("link click camp", "/t/camp-a").fields["click_id"]
    get("link click hashed", "/t/hashed-1")
    get("link click inactive offer", "/t/alpha-paused-1")
    get("link not found", "/t/no-such-link")
    earn = post("earn click", "/api/v1/earn/products/p1/click", headers=bearer,
                json={"taskUrl": "https://advertiser.example/offer?step=2", "campaign": "spring"}).json["clickId"]
    earn2 = post("earn click default task", "/api/v1/earn/products/p2/click",
                 headers={"Authorization": "Bearer tok-2"}, json={}).json["clickId"]
    post("earn click without token", "/api/v1/earn/products/p1/click", json={})
    post("earn click bad token", "/api/v1/earn/products/p1/click", headers={"Authorization": "Bearer nope"}, json={})
    post("earn click unknown product", "/api/v1/earn/products/p9/click", headers=bearer, json={})
    post("earn click bad body", "/api/v1/earn/products/p1/click", headers={**bearer, "Content-Type": "application/json"},
         body=b"{not json")
    post("earn click bad task url", "/api/v1/earn/products/p2/click", headers=bearer,
         json={"taskUrl": "https://elsewhere.example/"})
    # track events
    get("track", f"/api/v1/earn/track/{earn}", params={"event": "open"})
    get("track unknown click", "/api/v1/earn/track/00000000-0000-4000-8000-999999999999")
    # postbacks, dialect by dialect
    get("postback recorded", "/api/postback", params={"click_id": alpha, "transaction_id": "t-1", "status": "approved",
                                                       "amount": "12.50", "api_key": "key-alpha", "sub": "x"},
        headers={"X-Signature": "sha256=00", "X-Forwarded-For": "198.51.100.7"})
    get("postback duplicate", "/api/postback", params={"click_id": alpha, "transaction_id": "t-1", "status": "approved",
                                                        "amount": "12.50", "api_key": "key-alpha"})
    get("postback pending", "/api/postback", params={"cid": beta, "txn": "b-1", "status": "pending", "payout": "3",
                                                      "currency": "usd"}, headers={"X-API-Key": "key-beta"})
    get("postback status update", "/api/postback", params={"cid": beta, "txn": "b-1", "status": "approved"},
        headers={"X-API-Key": "key-beta"})
    get("postback conflicting duplicate", "/api/postback", params={"cid": beta, "txn": "b-1", "status": "approved",
                                                                    "payout": "4"}, headers={"X-API-Key": "key-beta"})
    get("postback publisher", f"/postback/key-alpha?cid={alpha}&txn=t-2&payout=5&commission=1.5&currency=GBP")
    get("postback peerclick", "/postback", params={"cid": opened, "payout": "2", "txid": "p-1", "param1": "v"})
    get("postback advertiser", "/postback/advertiser", params={"click_id": camp, "campaign_id": "camp-1",
                                                                "amount": "1", "transaction_id": "c-1"})
    get("postback campaign mismatch", "/postback/advertiser", params={"click_id": camp, "campaign_id": "camp-2"})
    get("postback campaign missing", "/postback/advertiser", params={"click_id": camp})
    post("postback earn", "/api/v1/earn/postback", json={"click_id": earn, "amount": "2.5", "status": "completed"})
    post("postback earn second user", "/api/v1/earn/postback", json={"click_id": earn2, "amount": "4"})
    post("postback earn reversal", "/api/v1/earn/postback", json={"click_id": earn2, "status": "reversed"})
    if profiles:
        send_profile_postbacks(get)
    get("postback invalid key", "/api/postback", params={"click_id": alpha, "api_key": "wrong"})
    get("postback key of another partner", "/api/postback", params={"click_id": alpha, "api_key": "key-beta"})
    get("postback click not found", "/api/postback", params={"click_id": "{click_id}", "api_key": "key-alpha"})
    get("postback click id missing", "/api/postback", params={"api_key": "key-alpha", "amount": "1"})
    get("postback key missing", "/api/postback", params={"click_id": alpha})
    get("postback test", "/api/postback", params={"status": "test", "api_key": "key-alpha"})
    get("postback invalid amount", "/api/postback", params={"click_id": alpha, "amount": "abc", "api_key": "key-alpha"})
    post("postback invalid body", "/api/postback", body=b"{broken", headers={"Content-Type": "application/json"})
    # the alpha click lives 2 hours
    harness.clock.advance(timedelta(hours=3))
    get("postback click expired", "/api/postback", params={"click_id": alpha, "transaction_id": "t-3",
                                                            "api_key": "key-alpha"})
    # any route
    request("wrong method", "DELETE", "/api/postback", params={"click_id": alpha})
    request("wrong method on a link", "PUT", f"/t/alpha-1?click_id={alpha}")
    get("unrouted", "/api/postbak", params={"click_id": alpha, "amount": "3"})
    get("health", "/healthz")
    get("openapi", "/openapi.json")
    return sent


def send_profile_postbacks(get: Any) -> None:
    """A partner with a profile, on its own URL: mapped statuses, a templated answer, reversals."""
    prof = get("link click prof", "/t/prof-1").fields["click_id"]
    profile_url = "/postback/key-prof"
    get("postback profile", profile_url, params={"subid": prof, "tid": "k-1", "status": "lead", "payout": "7.50",
                                                "uid": "u-9", "oid": "o-9", "sid": "s-9", "extra": "x"})
    get("postback profile update", profile_url, params={"subid": prof, "tid": "k-1", "status": "sale"})
    get("postback profile unknown status", profile_url, params={"subid": prof, "tid": "k-2", "status": "weird",
                                                                "payout": "1"})
    get("postback profile reversal", profile_url, params={"subid": prof, "tid": "k-r", "payout": "-7.50",
                                                         "ref": "k-1"})
    get("postback profile reversal of nothing", profile_url, params={"subid": prof, "tid": "k-r2",
                                                                    "payout": "-1", "ref": "k-9"})
    get("postback profile test", profile_url, params={"status": "test"})


def send_every_way_of_sending(harness: Any) -> dict[str, Any]:
    """What issue 12 added to the kinds of traffic (sent after `send_every_kind`, kept apart so
    that traffic writes the bytes it always wrote): HEAD probes of a tracking link, a gzip body
    on an unknown path and one cut short on a postback route, and a request the HTTP server itself refuses
    (receiver.http_errors, fed the raw bytes as waitress would be). {label: answer}."""
    import gzip

    from waitress.adjustments import Adjustments

    from receiver.http_errors import RecordingParser, log_refused_request

    sent: dict[str, Any] = {}
    harness.clock.advance(seconds=7)
    sent["link probe"] = harness.request("HEAD", "/t/alpha-1", params={"sub1": "a"})
    sent["link probe inactive offer"] = harness.request("HEAD", "/t/alpha-paused-1")
    sent["link probe not found"] = harness.request("HEAD", "/t/no-such-link")
    form = gzip.compress(b"cid=not-a-click&payout=2&sub=a&sub=b")
    sent["postback gzip cut short"] = harness.post("/postback", body=form[:-9], headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})
    sent["unrouted gzip"] = harness.post("/no/such/path", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})
    # an unfilled macro refused, and a parameter sent twice (issue 12: nothing booked wrong without a word)
    sent["link click prof again"] = harness.get("/t/prof-1")
    prof = sent["link click prof again"].fields["click_id"]
    sent["postback unfilled macro"] = harness.get("/postback/key-prof", params={"subid": prof, "tid": "k-m",
                                                                                "payout": "{payout}"})
    sent["postback repeated parameter"] = harness.get("/postback/key-prof", query_string=(
        f"subid={prof}&tid=k-rep&payout=1&sub1=a&sub1=b"))
    parser = RecordingParser(Adjustments())
    parser.received(b"GET /postback?cid=a\xff\xfeb HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\n\r\n")
    assert parser.completed and parser.error is not None
    sent["refused by the server"] = log_refused_request(harness.receiver, parser, "203.0.113.9")
    return sent
