"""Hostile input: control characters, invalid UTF-8, huge queries and bodies, slow and lying clients.

Every request that reaches the app becomes exactly one record whose line passes
`check_line`, and gets a 4xx (or its ordinary answer). Some requests never reach the
app, because waitress refuses them itself; since issue 12 each of those is logged too
(receiver.http_errors: a record of kind `http_error`) and answered with the app's JSON
error, at waitress's status. Only what never arrives whole cannot be logged (counted in
/healthz's `unlogged_requests`):

| request                                                     | answered                              |
|-------------------------------------------------------------|---------------------------------------|
| raw CR or LF inside the request target                      | 400 invalid_request_line / _header    |
| raw non-ASCII bytes in the target (\\xff, UTF-8 of U+2028)   | 400 invalid_request_line (Bad URI)    |
| a malformed request line (`GARBAGE`), a space in the target | 400 invalid_request_line              |
| NUL or bare CR in a header, a header name with a space      | 400 invalid_header                    |
| a 1 MB query string (request head over 64 KiB)              | 431 headers_too_large                 |
| an invalid or negative Content-Length                       | 400 invalid_content_length            |
| a body over 64 MiB (waitress's max_request_body_size)       | 413 body_too_large (1 to 64 MiB: the app's 413) |
| headers sent, then nothing (slow client), a Content-Length  | nothing until channel_timeout (30 s), |
|   larger than the body, bare-LF line endings                |   then the connection is closed       |
|                                                             |   (unlogged: counted as incomplete)   |
| the bytes after a Content-Length shorter than the body      | parsed as a next request: 400, or     |
|                                                             |   waiting for its end (keep-alive)    |
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import orjson
import pytest
import requests

from receiver.app import MAX_BODY_BYTES, MAX_LOGGED_BODY_BYTES
from receiver.contract.framing import BadLine, check_line, iter_log, read_segment, segment_paths
from tests.support.harness import Harness
from tests.support.live_server import LiveServer, start_live_server, stop_live_server

HOSTILE_VALUES = {
    "cr": "a\rb",
    "lf": "a\nb",
    "crlf-header": "x\r\nLocation: https://evil.example\r\n\r\n<html>",
    "u2028": "a\u2028b\u2029c",
    "nel": "a\u0085b",
    "nul": "a\x00b",
    "quote-backslash": '"\\"}\n{"crc32":"00000000"',
    "unicode": "日本語 ✓ 🎉",
    "long": "z" * 100_000,
}


def lines_are_intact(log_dir: Path) -> int:
    """Every line of every segment passes check_line; returns how many there are."""
    count = 0
    for path in segment_paths(log_dir):
        data = read_segment(path)  # a sealed segment is compressed: its lines as written
        assert data.endswith(b"\n")
        for line in data.split(b"\n")[:-1]:
            assert check_line(line) is not None, line[:200]
            count += 1
    return count


# ---------------------------------------------------------------- through the app (TestClient)


@pytest.fixture
def click(harness: Harness) -> str:
    return harness.link_click("open-1")


@pytest.mark.parametrize("carrier", ["query", "form", "json"])
@pytest.mark.parametrize("name", list(HOSTILE_VALUES))
def test_hostile_parameter_values_are_kept_exactly_in_one_intact_record(
        harness: Harness, click: str, name: str, carrier: str) -> None:
    value = HOSTILE_VALUES[name]
    params = {"cid": click, "txid": f"t-{name}-{carrier}", "evil": value, "status": value}
    if carrier == "query":
        resp = harness.raw("GET", "/postback", query_string=urlencode(params))
    elif carrier == "form":
        resp = harness.raw("POST", "/postback", body=urlencode(params),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        resp = harness.raw("POST", "/postback", body=orjson.dumps(params),
                           headers={"Content-Type": "application/json"})
    record = harness.log.one_new()
    assert (resp.status_code, resp.json["result"]) == (200, "recorded")
    assert record["http_status"] == 200
    assert record["custom_data"]["evil"] == value
    assert record["fields"]["status_raw"] == value.strip()
    assert record["fields"]["status"] == "rejected"  # an unknown status counts as rejected
    line = encode_last_line(harness)
    assert line.count(b"\n") == 1 and check_line(line) == record


def encode_last_line(harness: Harness) -> bytes:
    return segment_paths(harness.log.log_dir)[-1].read_bytes().splitlines(keepends=True)[-1]


@pytest.mark.parametrize("name", ["cr", "lf", "crlf-header", "u2028", "nul"])
def test_hostile_click_ids_are_logged_refusals(harness: Harness, name: str) -> None:
    value = HOSTILE_VALUES[name]
    ex = harness.get("/postback", params={"cid": value})
    assert (ex.status, ex.json["error"]) == (404, "click_not_found")
    assert ex.fields["click_id"] == value.strip()
    assert "location" not in ex.resp.headers
    assert not any("\n" in v or "\r" in v for v in ex.resp.headers.values())


# issue 15: bytes that are not UTF-8 keep their identity (`\xHH`), no longer replaced by U+FFFD
@pytest.mark.parametrize("query, expected", [
    ("cid=%ff%fe&evil=%ff%fe%fd", "\\xff\\xfe\\xfd"),
    ("cid=%C0%AF&evil=%ed%a0%80", "\\xed\\xa0\\x80"),  # overlong "/", a UTF-8 encoded surrogate
])
def test_invalid_utf8_in_the_query_is_escaped_and_the_raw_query_kept(
        harness: Harness, query: str, expected: str) -> None:
    ex = harness.get("/postback", query_string=query)
    assert ex.status == 404
    assert ex.record["query"] == query
    assert ex.custom_data["evil"] == expected


def test_invalid_utf8_in_a_form_body_is_logged_as_base64(harness: Harness, click: str) -> None:
    body = b"cid=" + click.encode() + b"&txid=bin&evil=\xff\xfe\x00"
    ex = harness.post("/postback", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert ex.json["result"] == "recorded"
    assert ex.record["body_encoding"] == "base64"
    assert base64.b64decode(ex.record["body"]) == body
    assert ex.custom_data["evil"] == "\\xff\\xfe\\x00"  # issue 15: its bytes, escaped (was U+FFFD twice)


def test_invalid_utf8_in_a_json_body_keeps_its_bytes(harness: Harness, click: str) -> None:
    """Issue 15: a JSON string with bytes that are not UTF-8 is read, each byte kept as `\\xHH`
    (it used to be refused 400 invalid_body, so the partner's postback was never counted)."""
    body = b'{"cid": "' + click.encode() + b'", "evil": "\xff\xfe"}'
    ex = harness.post("/postback", body=body, headers={"Content-Type": "application/json"})
    assert ex.json["result"] == "recorded"
    assert ex.custom_data["evil"] == "\\xff\\xfe"
    assert ex.record["body_encoding"] == "base64"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("method, path, headers, expected", [
    ("POST", "/postback", {}, (400, "invalid_body")),
    ("POST", "/api/v1/earn/products/p1/click", {"Authorization": "Bearer tok-1"}, (400, "invalid_body")),
    ("POST", "/no/such/path", {}, (404, "not_found")),
])
def test_a_deeply_nested_json_body_is_one_logged_refusal(
        harness: Harness, method: str, path: str, headers: dict[str, str], expected: tuple[int, str]) -> None:
    """orjson reads 1024 levels but writes only 255: a JSON body nested 300 deep once became
    an unlogged 500 (the record could not be encoded), the one answer without a record."""
    body = b'{"cid": "x", "evil": ' + nested(300) + b"}"
    ex = harness.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
    assert (ex.status, ex.json["error"]) == expected
    assert ex.record["body"] == body.decode()  # the raw body is still kept as received
    assert check_line(encode_last_line(harness)) is not None


def test_a_moderately_nested_json_body_is_kept_in_custom_data(harness: Harness, click: str) -> None:
    value = orjson.loads(nested(40))
    ex = harness.post("/postback", json={"cid": click, "txid": "nested", "evil": value})
    assert ex.json["result"] == "recorded"
    assert ex.custom_data["evil"] == value


def test_a_1_mb_query_reaching_the_app_is_one_intact_record(harness: Harness, click: str) -> None:
    """Through waitress it never gets here (431, see the table above); the app itself copes."""
    query = urlencode({"cid": click, "txid": "big", "pad": "q" * (1024 * 1024)})
    ex = harness.get("/postback", query_string=query)
    assert ex.json["result"] == "recorded"
    assert len(ex.record["query"]) == len(query)
    assert check_line(encode_last_line(harness)) is not None


@pytest.mark.parametrize("size", [MAX_BODY_BYTES + 1, 3 * MAX_BODY_BYTES])
def test_a_huge_body_is_a_logged_413_with_a_truncated_body(harness: Harness, size: int) -> None:
    ex = harness.post("/postback", body=b"a" * size, headers={"Content-Type": "application/octet-stream"})
    assert (ex.status, ex.json["error"]) == (413, "body_too_large")
    assert ex.record["body_bytes"] == size and ex.record["body_truncated"] is True
    assert len(ex.record["body"]) == MAX_LOGGED_BODY_BYTES


# ---------------------------------------------------------------- through a real waitress process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_live_server(tmp_path_factory.mktemp("hostile") / "data", threads=8)
    try:
        yield live
    finally:
        stop_live_server(live)


def address(server: LiveServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname, parts.port


def exchange(server: LiveServer, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes and read until the server closes (bounded by `wait`)."""
    with socket.create_connection(address(server), timeout=wait) as sock:
        with contextlib.suppress(OSError):  # the server may refuse (and close) before reading everything
            sock.sendall(data)
        out = b""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:  # reset after an early refusal: keep what was answered
            pass
        return out


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def request_bytes(target: bytes, method: bytes = b"GET", headers: bytes = b"", body: bytes = b"") -> bytes:
    return (method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers
            + b"\r\n" + body)


def post_bytes(body: bytes, content_type: bytes = b"application/x-www-form-urlencoded",
               length: int | None = None, target: bytes = b"/postback") -> bytes:
    length = len(body) if length is None else length
    return request_bytes(target, b"POST", b"Content-Type: " + content_type + b"\r\nContent-Length: "
                         + str(length).encode() + b"\r\n", body)


def real_click(server: LiveServer) -> str:
    resp = requests.get(f"{server}/t/peer-aff3", allow_redirects=False, timeout=10)
    return parse_qs(urlsplit(resp.headers["Location"]).query)["click_id"][0]


REACHES_APP = {
    # name: (request, expected status)
    "pct-crlf-in-query": (request_bytes(b"/postback?cid=a%0d%0ab&evil=%0d%0aSet-Cookie:%20x"), 404),
    "pct-nul-in-query": (request_bytes(b"/postback?cid=a%00b"), 404),
    "pct-u2028-in-query": (request_bytes(b"/postback?cid=a%e2%80%a8b"), 404),
    "pct-ff-fe-in-query": (request_bytes(b"/postback?cid=%ff%fe"), 404),
    "pct-ff-fe-in-path": (request_bytes(b"/t/%ff%fe"), 404),
    "pct-crlf-in-slug": (request_bytes(b"/t/acme-aff1%0d%0aLocation:%20https://evil.example"), 404),
    "raw-nul-in-query": (request_bytes(b"/postback?cid=a\x00b"), 404),
    "ff-fe-in-user-agent": (request_bytes(b"/healthz", headers=b"User-Agent: a\xff\xfeb\r\n"), 200),
    "u2028-in-referer": (request_bytes(b"/healthz", headers="Referer: a\u2028b\r\n".encode()), 200),
    "invalid-utf8-form-body": (post_bytes(b"cid=\xff\xfe&evil=\x00\xff"), 404),
    "invalid-utf8-json-body": (post_bytes(b'{"cid": "\xff\xfe"}', b"application/json"), 404),  # was 400 (issue 15)
    "json-body-not-an-object": (post_bytes(b"[1, 2, 3]", b"application/json"), 400),
    "crlf-in-json-body": (post_bytes(orjson.dumps({"cid": "a\r\nb", "evil": "\u2028\x00"}), b"application/json"),
                          404),
    "content-length-smaller": (post_bytes(b"cid=abcdefgh&x=1", length=5), 404),
    "chunked-small-body": (request_bytes(b"/postback", b"POST", b"Transfer-Encoding: chunked\r\nContent-Type: "
                                         b"application/x-www-form-urlencoded\r\n", b"5\r\ncid=a\r\n0\r\n\r\n"), 404),
    "http-1.0-no-host": (b"GET /postback?cid=x HTTP/1.0\r\n\r\n", 404),
    "unknown-method": (request_bytes(b"/api/postback", b"BREW"), 400),  # Falcon: not an HTTP method
    "known-method-wrong-route": (request_bytes(b"/healthz", b"DELETE"), 405),
    "unrouted-with-click-id": (request_bytes(b"/wrong/path?click_id=%0d%0a"), 404),
    "max-header-size-ok": (request_bytes(b"/postback?cid=" + b"x" * 60_000), 404),
}

NEVER_REACHES_APP = {
    # name: (request, waitress's status)
    "raw-crlf-in-target": (b"GET /postback?cid=a\r\nb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    "raw-cr-in-target": (b"GET /postback?cid=a\rb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    "raw-ff-fe-in-target": (request_bytes(b"/postback?cid=a\xff\xfeb"), 400),
    "raw-u2028-in-target": (request_bytes("/postback?cid=a\u2028b".encode()), 400),
    "malformed-request-line": (b"GARBAGE\r\n\r\n", 400),
    "space-in-target": (request_bytes(b"/postback?cid=a b"), 400),
    "nul-in-header": (request_bytes(b"/healthz", headers=b"User-Agent: a\x00b\r\n"), 400),
    "bare-cr-in-header": (request_bytes(b"/healthz", headers=b"X-Evil: a\rb\r\n"), 400),
    "space-in-header-name": (request_bytes(b"/healthz", headers=b"Bad Header: x\r\n"), 400),
    "1-mb-query": (request_bytes(b"/postback?cid=" + b"a" * (1024 * 1024)), 431),
    "invalid-content-length": (request_bytes(b"/postback", b"POST", b"Content-Length: abc\r\n", b"cid=a"), 400),
    "negative-content-length": (request_bytes(b"/postback", b"POST", b"Content-Length: -1\r\n", b"cid=a"), 400),
}


@pytest.mark.server
@pytest.mark.parametrize("name", list(REACHES_APP))
def test_hostile_requests_reaching_the_app_are_one_intact_record_each(server: LiveServer, name: str) -> None:
    request, expected = REACHES_APP[name]
    before = len(server.records())
    response = exchange(server, request)
    assert status_of(response) == expected, response[:300]
    assert b"\r\nServer: clickledger\r\n" in response
    new = server.records()[before:]
    assert len(new) == 1, f"{name}: {len(new)} records"
    assert new[0]["http_status"] == expected
    head = response.partition(b"\r\n\r\n")[0]
    assert b"evil" not in head.lower() and b"set-cookie" not in head.lower()
    lines_are_intact(server.data_dir / "log")


@pytest.mark.server
@pytest.mark.parametrize("name", list(NEVER_REACHES_APP))
def test_requests_waitress_refuses_never_reach_the_app(server: LiveServer, name: str) -> None:
    """Issue 12 changed what they get: one record each and the app's JSON error (they got
    waitress's own text page and no record)."""
    request, expected = NEVER_REACHES_APP[name]
    before = len(server.records())
    response = exchange(server, request)
    assert status_of(response) == expected, response[:300]
    assert b"(generated by clickledger)" not in response  # not waitress's own error page: the JSON error
    answer = orjson.loads(response.partition(b"\r\n\r\n")[2])
    new = server.records()[before:]
    assert len(new) == 1, f"{name}: {len(new)} records"
    assert (answer["ok"], answer["error"]) == (False, new[0]["error"])
    assert (new[0]["kind"], new[0]["http_status"]) == ("http_error", expected)
    assert requests.get(f"{server}/healthz", timeout=10).status_code == 200  # still serving


@pytest.mark.server
@pytest.mark.parametrize("size, chunked", [(MAX_BODY_BYTES + 1, False), (2 * MAX_BODY_BYTES, False),
                                           (2 * MAX_BODY_BYTES, True)])
def test_a_huge_body_on_a_real_server_is_a_logged_413(server: LiveServer, size: int, chunked: bool) -> None:
    before = len(server.records())
    if chunked:
        half = size // 2
        chunk = b"%x\r\n" % half + b"a" * half + b"\r\n"
        request = request_bytes(b"/postback", b"POST", b"Transfer-Encoding: chunked\r\n", chunk * 2 + b"0\r\n\r\n")
    else:
        request = post_bytes(b"a" * size)
    response = exchange(server, request)
    assert status_of(response) == 413, response[:300]
    assert response.rstrip().endswith(b'"error":"body_too_large","message":"request bodies are limited to '
                                       + str(MAX_BODY_BYTES).encode() + b' bytes"}')
    new = server.records()[before:]
    assert len(new) == 1 and new[0]["error"] == "body_too_large"


@pytest.mark.server
def test_a_body_of_exactly_the_limit_reaches_the_app(server: LiveServer) -> None:
    cid = real_click(server)
    prefix = f"cid={cid}&txid=limit&pad=".encode()
    body = prefix + b"b" * (MAX_BODY_BYTES - len(prefix))
    before = len(server.records())
    response = exchange(server, post_bytes(body))
    assert status_of(response) == 200, response[:300]
    new = server.records()[before:]
    assert len(new) == 1 and new[0]["result"] == "recorded" and new[0]["body_bytes"] == MAX_BODY_BYTES
    assert new[0]["body_truncated"] is True


def stalled_connections(server: LiveServer, requests_bytes: list[bytes]) -> list[socket.socket]:
    socks = []
    for data in requests_bytes:
        sock = socket.create_connection(address(server), timeout=10)
        sock.sendall(data)
        socks.append(sock)
    return socks


def nonce_logged(server: LiveServer, nonces: set[str]) -> set[str]:
    return {r["query"].rsplit("nonce=", 1)[-1] for r in server.records() if "nonce=" in (r["query"] or "")} & nonces


@pytest.mark.server
def test_slow_and_lying_clients_do_not_stop_others_from_being_served(server: LiveServer) -> None:
    """Stalled clients (headers only, a partial head, a body shorter than its Content-Length,
    bare-LF heads) hold a connection each; everyone else is still served at once. Waitress
    waits for them (until channel_timeout, 30 s): they never reach the app, so no record."""
    nonces = {f"stall{i}-{uuid.uuid4().hex[:8]}" for i in range(60)}
    stalls = []
    for i, nonce in enumerate(sorted(nonces)):
        target = f"/postback?cid=x&nonce={nonce}".encode()
        kind = i % 4
        if kind == 0:  # the head, then nothing of the announced body
            stalls.append(b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        elif kind == 1:  # part of the head
            stalls.append(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: slo")
        elif kind == 2:  # Content-Length larger than the body sent
            stalls.append(b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\ncid=abc")
        else:  # bare LF line endings: waitress waits for a CRLF CRLF that never comes
            stalls.append(b"GET " + target + b" HTTP/1.1\nHost: x\n\n")
    socks = stalled_connections(server, stalls)
    try:
        session = requests.Session()
        started = time.monotonic()
        for _ in range(40):
            t0 = time.monotonic()
            assert session.get(f"{server}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - t0 < 2.0
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: requests.get(f"{server}/healthz", timeout=5).status_code,
                                     range(40)))
        assert statuses == [200] * 40
        assert time.monotonic() - started < 15
        # bounded wait: none of the stalled requests got an answer or a record meanwhile
        time.sleep(0.5)
        for sock in socks:
            sock.setblocking(False)
            answered = b""
            with contextlib.suppress(BlockingIOError):  # nothing to read: still waiting, as expected
                answered = sock.recv(1)
            assert answered == b"", "a stalled request was answered"
        assert nonce_logged(server, nonces) == set()
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.3)
    assert nonce_logged(server, nonces) == set()  # a client that gives up is never logged either
    assert requests.get(f"{server}/healthz", timeout=5).status_code == 200


@pytest.mark.server
@pytest.mark.slow
def test_waitress_drops_a_stalled_client_after_channel_timeout(server: LiveServer, request) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow variant: run with -m slow")
    nonce = uuid.uuid4().hex
    sock = socket.create_connection(address(server), timeout=60)
    try:
        sock.sendall(b"POST /postback?nonce=" + nonce.encode()
                     + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\ncid=abc")
        started = time.monotonic()
        data = b""
        while time.monotonic() - started < 55:  # channel_timeout 30 s + cleanup_interval 10 s
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        waited = time.monotonic() - started
    finally:
        sock.close()
    print(f"\n[hostile] a body shorter than its Content-Length: dropped after {waited:.1f} s, answer {data[:40]!r}")
    assert waited < 55, "the stalled connection was never dropped"
    assert data == b""  # dropped without an answer
    assert nonce_logged(server, {nonce}) == set()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.server
def test_memory_stays_bounded_under_200_bodies_of_900_kb(server: LiveServer) -> None:
    if not os.path.exists(f"/proc/{server.proc.pid}/status"):
        pytest.skip("no /proc")
    cid = real_click(server)
    before_kib = rss_kib(server.proc.pid)
    pad = "m" * (900 * 1024)
    lock = threading.Lock()
    peak = [before_kib]

    def send(i: int) -> int:
        session = requests.Session()
        if i % 2:
            resp = session.post(f"{server}/postback", data={"cid": cid, "txid": f"mem-{i}", "pad": pad},
                                timeout=30)
        else:
            resp = session.post(f"{server}/api/postback?click_id={quote(cid)}", timeout=30,
                                data=pad.encode(), headers={"Content-Type": "application/octet-stream"})
        with lock:
            peak[0] = max(peak[0], rss_kib(server.proc.pid))
        return resp.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(200)))
    after_kib = rss_kib(server.proc.pid)
    print(f"\n[hostile] receiver RSS: {before_kib / 1024:.0f} MB before, peak {peak[0] / 1024:.0f} MB, "
          f"{after_kib / 1024:.0f} MB after 200 bodies of 900 KB")
    assert set(statuses) == {200}, statuses
    assert peak[0] < 300 * 1024 and after_kib < 300 * 1024


@pytest.mark.server
def test_the_hostile_servers_log_is_intact_and_in_order(server: LiveServer) -> None:
    bad: list[BadLine] = []
    records = list(iter_log(server.data_dir / "log", on_bad=bad.append))
    assert bad == []
    seqs = [r["seq"] for r in records]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False))
    assert lines_are_intact(server.data_dir / "log") == len(records)
