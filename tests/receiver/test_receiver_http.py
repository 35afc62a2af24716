"""HTTP as real clients send it (issue 12): every body type, Content-Encoding, charsets, exact
JSON numbers, repeated parameters, HEAD, and UUID click ids in any case.

Every request goes through `harness.request`, which asserts that it appended exactly one log
record agreeing with the answer.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import pytest

from receiver.app import MAX_BODY_BYTES
from receiver.contract.framing import segment_paths
from tests.support.harness import Harness
from tests.support.ids import IdSequence
from tests.support.postbacks import multipart

RECORDED = {"ok": True, "result": "recorded"}
DUPLICATE = {"ok": True, "result": "duplicate"}
FORM = "application/x-www-form-urlencoded"


def last_line(harness: Harness) -> bytes:
    return segment_paths(harness.log.log_dir)[-1].read_bytes().splitlines()[-1]


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("body", ["cid={cid}&txid=T-1&payout=2.5&sub=x", "cid={cid}&txid=T-1&payout=2.5&sub=x\n"])
def test_a_text_plain_body_holding_a_query_string_is_read(harness: Harness, body: str) -> None:
    cid = harness.link_click("open-1")
    ex = harness.post("/postback", body=body.format(cid=cid), content_type="text/plain; charset=utf-8")
    assert ex.json == RECORDED
    assert (ex.fields["click_id"], ex.fields["transaction_id"], ex.fields["amount"]) == (cid, "T-1", "2.5")
    assert ex.custom_data == {"sub": "x"}


def test_a_text_plain_body_holding_json_is_read(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    body = orjson.dumps({"cid": cid, "txid": "T-2", "payout": "3", "meta": {"a": [1, 2]}})
    ex = harness.post("/postback", body=body, content_type="text/plain")
    assert ex.json == RECORDED
    assert (ex.fields["transaction_id"], ex.fields["amount"]) == ("T-2", "3")
    assert ex.custom_data == {"meta": {"a": [1, 2]}}


def test_a_text_plain_body_of_broken_json_is_a_logged_400(harness: Harness) -> None:
    ex = harness.post("/postback", body=b'{"cid": "x"', content_type="text/plain")
    assert (ex.status, ex.json["error"]) == (400, "invalid_body")
    assert ex.record["body"] == '{"cid": "x"'


def test_multipart_form_data_fields_are_read_and_uploads_are_not_parameters(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    body, content_type = multipart([("cid", cid), ("txid", "T-3"), ("payout", "4.75"), ("note", "héllo\r\nworld")])
    upload = (b'--b0undary-x\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
              b"Content-Type: text/plain\r\n\r\nnot a parameter\r\n")
    body = body.replace(b"--b0undary-x--", upload + b"--b0undary-x--")
    ex = harness.post("/postback", body=body, content_type=content_type)
    assert ex.json == RECORDED
    assert (ex.fields["click_id"], ex.fields["transaction_id"], ex.fields["amount"]) == (cid, "T-3", "4.75")
    assert ex.custom_data == {"note": "héllo\r\nworld"}
    assert ex.record["body"] == body.decode()  # the raw body, as sent


def test_a_multipart_part_is_read_in_its_own_charset(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    body, content_type = multipart([("cid", cid), ("txid", "T-4"), ("city", "Zürich".encode("latin-1"))],
                                   part_headers={"Content-Type": "text/plain; charset=iso-8859-1"})
    ex = harness.post("/postback", body=body, content_type=content_type)
    assert ex.json == RECORDED and ex.custom_data == {"city": "Zürich"}


@pytest.mark.parametrize("body, content_type", [
    (b"--b\r\nContent-Disposition: form-data; name=\"cid\"\r\n\r\nx\r\n", "multipart/form-data; boundary=b"),
    (b"cid=x", "multipart/form-data"),  # no boundary
])
def test_a_broken_multipart_body_is_a_logged_400(harness: Harness, body: bytes, content_type: str) -> None:
    ex = harness.post("/postback", body=body, content_type=content_type)
    assert (ex.status, ex.json["error"]) == (400, "invalid_body")


def test_a_latin_1_form_is_read_in_its_charset(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    body = f"cid={cid}&txid=T-5&".encode() + b"city=Z%FCrich&name=Jos\xe9"
    ex = harness.post("/postback", body=body, content_type=f"{FORM}; charset=ISO-8859-1")
    assert ex.json == RECORDED
    assert ex.custom_data == {"city": "Zürich", "name": "José"}
    assert ex.record["body_encoding"] == "base64" and base64.b64decode(ex.record["body"]) == body


def test_a_json_body_in_another_charset_is_read_in_it(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    body = f'{{"cid": "{cid}", "txid": "T-6", "city": "Zürich"}}'.encode("latin-1")
    ex = harness.post("/postback", body=body, content_type="application/json; charset=latin-1")
    assert ex.json == RECORDED and ex.custom_data == {"city": "Zürich"}


def test_an_unknown_charset_is_a_logged_400(harness: Harness) -> None:
    ex = harness.post("/postback", body=b"cid=x", content_type=f"{FORM}; charset=no-such-charset")
    assert (ex.status, ex.json["error"]) == (400, "invalid_body")
    assert "no-such-charset" in ex.json["message"]


@pytest.mark.parametrize("coding, compress", [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("deflate", zlib.compress),  # RFC 9110 deflate: the zlib format
    ("deflate", lambda data: zlib.compress(data)[2:-4]),  # the bare deflate stream some clients send
    ("gzip, identity", gzip.compress),
    ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),  # applied in that order
])
def test_compressed_bodies_are_decoded_and_kept_raw(harness: Harness, coding: str, compress) -> None:
    cid = harness.link_click("open-1")
    raw = compress(urlencode({"cid": cid, "txid": f"T-{coding}", "payout": "6", "sub": "z"}).encode())
    ex = harness.post("/postback", body=raw, headers={"Content-Type": FORM, "Content-Encoding": coding})
    assert ex.json == RECORDED
    assert (ex.fields["click_id"], ex.fields["amount"], ex.fields["content_encoding"]) == (cid, "6", coding)
    assert ex.custom_data == {"sub": "z"}
    assert ex.record["body_encoding"] == "base64" and base64.b64decode(ex.record["body"]) == raw


def test_a_gzip_json_earn_postback_is_read(harness: Harness) -> None:
    cid = harness.earn_click("p1")
    raw = gzip.compress(orjson.dumps({"click_id": cid, "amount": 2.5, "transactionId": "E-1"}))
    ex = harness.post("/api/v1/earn/postback", body=raw,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert ex.json == RECORDED and (ex.fields["amount"], ex.fields["transaction_id"]) == ("2.5", "E-1")


def test_a_decompression_bomb_is_a_logged_413_with_the_compressed_body_kept(harness: Harness) -> None:
    bomb = gzip.compress(b"a=" + b"0" * (20 * MAX_BODY_BYTES))  # ~20 KiB that would inflate to 20 MiB
    assert len(bomb) < MAX_BODY_BYTES // 20
    ex = harness.post("/postback", query_string="cid=abc", body=bomb,
                      headers={"Content-Type": FORM, "Content-Encoding": "gzip"})
    assert (ex.status, ex.json["error"]) == (413, "body_too_large")
    assert "decodes to more than" in ex.json["message"]
    rec = ex.record
    assert (rec["kind"], rec["route"], rec["body_encoding"]) == ("postback", "/postback", "base64")
    assert base64.b64decode(rec["body"]) == bomb and rec["body_bytes"] == len(bomb)
    assert ex.fields == {"click_id": "abc", "content_encoding": "gzip"}
    assert ex.custom_data == {"cid": "abc"}


@pytest.mark.parametrize("coding, body, code, status", [
    ("br", b"\x1b\x03\x00", "unsupported_content_encoding", 415),
    ("gzip", b"not gzip at all", "invalid_body", 400),
    ("gzip", gzip.compress(b"cid=x&payout=1")[:-6], "invalid_body", 400),  # cut short
    ("gzip", gzip.compress(b"cid=x") + b"trailing junk", "invalid_body", 400),
])
def test_an_undecodable_body_is_a_logged_refusal(harness: Harness, coding: str, body: bytes, code: str,
                                                 status: int) -> None:
    ex = harness.post("/api/postback", body=body, headers={"Content-Type": FORM, "Content-Encoding": coding})
    assert (ex.status, ex.json["error"]) == (status, code)
    assert (ex.record["route"], ex.fields["content_encoding"]) == ("/api/postback", coding)


def test_a_bomb_sent_to_an_unknown_path_is_a_413_too(harness: Harness) -> None:
    bomb = gzip.compress(b"0" * (2 * MAX_BODY_BYTES))
    ex = harness.post("/nowhere", body=bomb, headers={"Content-Encoding": "gzip"})
    assert (ex.status, ex.json["error"], ex.record["kind"]) == (413, "body_too_large", "unrouted")


# ---------------------------------------------------------------- JSON numbers


def test_big_integer_transaction_ids_stay_distinct(harness: Harness) -> None:
    cid = harness.earn_click("p1")
    first = harness.post("/api/v1/earn/postback", body=f'{{"click_id": "{cid}", "transactionId": '
                         f"18446744073709551616, \"amount\": 1.5}}", content_type="application/json")
    second = harness.post("/api/v1/earn/postback", body=f'{{"click_id": "{cid}", "transactionId": '
                          f"18446744073709551617, \"amount\": 1.5}}", content_type="application/json")
    assert (first.json, second.json) == (RECORDED, RECORDED)  # the second was a lost duplicate
    assert first.fields["transaction_id"] == "18446744073709551616"
    assert second.fields["transaction_id"] == "18446744073709551617"


def test_json_numbers_are_kept_as_sent_in_fields_and_custom_data(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    body = (f'{{"cid": "{cid}", "txid": 12345678901234567890123, "payout": 12.50, '
            '"score": 0.1000000000000000055511151231257827, "big": -98765432109876543210, "small": 7, '
            '"nested": {"x": [1.0, 2E+300]}}').encode()
    ex = harness.post("/postback", body=body, content_type="application/json")
    assert ex.json == RECORDED
    assert (ex.fields["transaction_id"], ex.fields["amount"]) == ("12345678901234567890123", "12.50")
    line = last_line(harness)
    # the very digits sent, as JSON numbers (not strings, not rounded floats)
    assert (b'"custom_data":{"score":0.1000000000000000055511151231257827,"big":-98765432109876543210,'
            b'"small":7,"nested":{"x":[1.0,2E+300]}}') in line


def test_a_json_body_without_floats_reads_as_before(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    ex = harness.post("/postback", json={"cid": cid, "txid": 18446744073709551615, "n": -5, "ok": True})
    assert ex.json == RECORDED
    assert ex.fields["transaction_id"] == "18446744073709551615"
    assert ex.custom_data == {"n": -5, "ok": True}


# ---------------------------------------------------------------- repeated parameters


def test_a_repeated_query_parameter_keeps_every_value(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    ex = harness.get("/postback", query_string=f"cid={cid}&txid=T-7&sub=a&sub=b&txid=T-8&sub=c&one=1")
    assert ex.json == RECORDED
    assert ex.fields["transaction_id"] == "T-7"  # the first value decides, as before
    assert ex.custom_data == {"sub": ["a", "b", "c"], "one": "1", "txid": ["T-7", "T-8"]}


@pytest.mark.parametrize("carrier", ["form", "text", "multipart"])
def test_a_repeated_body_parameter_keeps_every_value(harness: Harness, carrier: str) -> None:
    cid = harness.link_click("open-1")
    pairs = [("cid", cid), ("payout", "1"), ("sub", "a"), ("payout", "2"), ("sub", "a")]
    if carrier == "multipart":
        body, content_type = multipart(pairs)
    else:
        body, content_type = urlencode(pairs).encode(), FORM if carrier == "form" else "text/plain"
    ex = harness.post("/postback", body=body, content_type=content_type)
    assert ex.json == RECORDED and ex.fields["amount"] == "1"
    assert ex.custom_data == {"sub": ["a", "a"], "payout": ["1", "2"]}


def test_repeats_on_a_click_and_on_an_unknown_path_are_kept(harness: Harness) -> None:
    click = harness.get("/t/open-1", query_string="sub1=a&sub1=b")
    assert click.custom_data == {"sub1": ["a", "b"]}
    lost = harness.get("/api/postbak", query_string="click_id=x&click_id=y")
    assert lost.fields["click_id"] == "x" and lost.custom_data == {"click_id": ["x", "y"]}


# ---------------------------------------------------------------- HEAD


@pytest.mark.parametrize("path", ["/healthz", "/api/analytics/postback/test", "/openapi.json"])
def test_head_is_answered_like_get_without_a_body(harness: Harness, path: str) -> None:
    get = harness.get(path)
    head = harness.request("HEAD", path)
    assert head.status == get.status == 200 and head.resp.content == b""
    assert head.resp.headers["content-type"] == get.resp.headers["content-type"]
    assert (head.record["method"], head.record["route"], head.record["result"]) == ("HEAD", path, "ok")


def test_head_of_a_tracking_link_is_a_probe_and_makes_no_click(harness: Harness) -> None:
    clicks = len(harness.receiver.clicks)
    ex = harness.request("HEAD", "/t/alpha-1", params={"sub1": "x"})
    assert ex.status == 302 and ex.resp.content == b""
    location = ex.resp.headers["location"]
    query = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert location.startswith("https://shop.example/land?src=net")
    assert query["offer_id"] == ["alpha-shop"] and query["uid"] == [""] and "click_id" not in query
    rec = ex.record
    assert (rec["kind"], rec["route"], rec["result"], rec["method"]) == ("probe", "/t/{slug}", "probe", "HEAD")
    assert ex.fields == {"slug": "alpha-1", "offer_id": "alpha-shop", "partner_id": "alpha",
                         "affiliate_id": ex.fields["affiliate_id"], "redirect_url": location}
    assert ex.custom_data == {"sub1": "x"}
    assert len(harness.receiver.clicks) == clicks
    assert harness.click_ids.issued == []  # not even an id was drawn: nothing a postback could convert


def test_head_of_an_inactive_or_unknown_link(harness: Harness) -> None:
    inactive = harness.request("HEAD", "/t/alpha-paused-1")
    assert (inactive.status, inactive.resp.headers["location"]) == (302, "https://home.example/")
    assert (inactive.record["kind"], inactive.record["result"]) == ("probe", "offer_inactive")
    missing = harness.request("HEAD", "/t/no-such-link")
    assert (missing.status, missing.record["error"], missing.record["kind"]) == (404, "link_not_found", "probe")
    assert missing.resp.content == b""


def test_a_get_after_a_head_still_makes_its_click(harness: Harness) -> None:
    harness.request("HEAD", "/t/open-1")
    cid = harness.link_click("open-1")
    assert harness.get("/postback", params={"cid": cid, "txid": "H-1"}).json == RECORDED


def test_head_of_a_postback_url_is_answered_like_its_get(harness: Harness) -> None:
    cid = harness.link_click("open-1")
    ex = harness.request("HEAD", "/postback", params={"cid": cid, "txid": "H-2"})
    assert ex.status == 200 and ex.resp.content == b"" and ex.record["result"] == "recorded"
    assert harness.get("/postback", params={"cid": cid, "txid": "H-2"}).json == DUPLICATE
    unknown = harness.request("HEAD", "/postback", params={"cid": "{clickid}"})
    assert (unknown.status, unknown.record["error"]) == (404, "click_not_found")


def test_head_of_a_track_url(harness: Harness) -> None:
    cid = harness.earn_click("p1")
    ex = harness.request("HEAD", f"/api/v1/earn/track/{cid}")
    assert (ex.status, ex.record["result"]) == (204, "tracked")


# ---------------------------------------------------------------- UUID click ids in any case


@pytest.fixture
def lettered(make_harness, data_dir: Path) -> Harness:
    """A harness whose click ids have hex letters (abcdef01-0000-4000-8000-...): case shows."""
    return make_harness(data_dir, new_click_id=IdSequence(prefix="abcdef01"))


def test_an_upper_case_uuid_click_id_finds_its_click_and_is_kept_as_sent(lettered: Harness) -> None:
    cid = lettered.link_click("open-1")
    ex = lettered.get("/postback", params={"cid": cid.upper(), "txid": "U-1", "payout": "3"})
    assert ex.json == RECORDED  # was click_not_found
    assert ex.fields["click_id"] == cid.upper() and ex.fields["offer_id"] == "open-offer"


def test_the_same_conversion_in_another_case_is_a_duplicate(lettered: Harness) -> None:
    cid = lettered.link_click("open-1")
    assert lettered.get("/postback", params={"cid": cid.upper()}).json == RECORDED  # txid defaults to the id
    assert lettered.get("/postback", params={"cid": cid}).json == DUPLICATE
    assert lettered.get("/postback", params={"cid": cid.title(), "txid": "other"}).json == RECORDED
    assert len(lettered.receiver.conversions) == 2


def test_case_insensitive_lookup_survives_a_restart(lettered: Harness, make_harness) -> None:
    cid = lettered.link_click("open-1")
    assert lettered.get("/postback", params={"cid": cid.upper(), "txid": "R-1"}).json == RECORDED
    lettered.close()
    again = make_harness(lettered.data_dir)
    assert again.get("/postback", params={"cid": cid, "txid": "R-1"}).json == DUPLICATE
    assert again.get("/postback", params={"cid": cid.upper(), "txid": "R-2"}).json == RECORDED


def test_a_track_event_for_an_upper_case_click_id(lettered: Harness) -> None:
    cid = lettered.earn_click("p1")
    ex = lettered.get(f"/api/v1/earn/track/{cid.upper()}")
    assert ex.status == 204 and ex.fields["click_id"] == cid.upper()


def test_a_non_uuid_click_id_stays_case_sensitive(lettered: Harness) -> None:
    ex = lettered.get("/postback", params={"cid": "ABCDEF01-NOT-A-UUID"})
    assert (ex.status, ex.json["error"]) == (404, "click_not_found")
