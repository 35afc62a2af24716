"""Requests waitress refuses before the app (issue 12): each is one log record and a JSON error.

Raw bytes over real sockets to a real receiver process (tests/support/live_server.py), and to
an in-process waitress whose log fails (the 503 path), plus waitress's channel driven by hand
for the requests that can never be logged (counted in /healthz).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from waitress.adjustments import Adjustments
from waitress.server import create_server

from receiver.app import Receiver, Settings, create_app
from receiver.contract.record import escape_bytes, unescape_bytes
from receiver.http_errors import RecordingParser, channel_class, install, log_refused_request
from receiver.log import SegmentWriter
from receiver.server import waitress_options
from tests.support.live_server import LiveServer, start_live_server, stop_live_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_live_server(tmp_path_factory.mktemp("http-errors") / "data", threads=4)
    try:
        yield live
    finally:
        stop_live_server(live)


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def exchange(url: str, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (bounded by `wait`)."""
    with socket.create_connection(address(url), timeout=wait) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        out = b""
        deadline = time.monotonic() + wait
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        return out


def answered(response: bytes) -> tuple[int, dict[str, Any], bytes]:
    """(status, JSON body, head) of a raw HTTP response."""
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body), head


def one_new_record(server: LiveServer, before: int) -> dict[str, Any]:
    new = server.records()[before:]
    assert len(new) == 1, new
    return new[0]


# name: (raw request, status, code, what the record recovers)
REFUSED = {
    "raw utf-8 in the query": (
        "GET /postback?cid=caf\u00e9-1&sub=\u2028 HTTP/1.1\r\nHost: x\r\nUser-Agent: tracker/1\r\n"
        "Connection: close\r\n\r\n".encode(),
        400, "invalid_request_line",
        {"method": "GET", "path": "/postback", "query": "cid=caf\u00e9-1&sub=\u2028".encode().decode("latin-1"),
         "user_agent": "tracker/1", "click_id": "caf\u00e9-1", "custom_data": {"cid": "caf\u00e9-1", "sub": "\u2028"},
         "request_line": "GET /postback?cid=caf\u00e9-1&sub=\\xe2\\x80\\xa8 HTTP/1.1"}),
    "raw invalid utf-8 in the target": (
        b"GET /api/postback?click_id=a\xff\xfeb HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line",
        {"method": "GET", "path": "/api/postback", "request_line": "GET /api/postback?click_id=a\\xff\\xfeb HTTP/1.1",
         "click_id": "a\\xff\\xfeb"}),  # issue 15: the bytes kept (was U+FFFD twice)
    "malformed request line": (
        b"GARBAGE\r\n\r\n", 400, "invalid_request_line",
        {"method": "", "path": "", "query": "", "request_line": "GARBAGE", "server_reason": "Start line is invalid"}),
    "space in the target": (
        b"GET /postback?cid=a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line",
        {"method": "GET", "request_line": "GET /postback?cid=a b HTTP/1.1"}),
    "bare cr in the request line": (
        b"GET /postback?cid=a\rb HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line",
        {"request_line": "GET /postback?cid=a\\x0db HTTP/1.1"}),
    "nul in a header": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x00b\r\nReferer: https://r.example/\r\n\r\n",
        400, "invalid_header",
        {"method": "GET", "path": "/healthz", "headers": "Host: x\\x0d\\x0aUser-Agent: a\\x00b\\x0d\\x0a"
         "Referer: https://r.example/\\x0d\\x0a\\x0d\\x0a", "referer": "https://r.example/"}),
    "space in a header name": (
        b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "invalid_header", {"server_reason": "Invalid header"}),
    "invalid content-length": (
        b"POST /postback?cid=abc HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: abc\r\n\r\ncid=a", 400, "invalid_content_length",
        {"method": "POST", "path": "/postback", "query": "cid=abc", "click_id": "abc",
         "content_type": "application/x-www-form-urlencoded"}),
    "negative content-length": (
        b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "invalid_content_length", {}),
    "bad chunk size": (
        b"POST /postback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ncid=a\r\nzz\r\n",
        400, "invalid_chunked_body", {"server_reason": "Invalid chunk size", "body": "cid=a", "body_bytes": 5}),
    "transfer-encoding other than chunked": (
        b"POST /postback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
        "transfer_encoding_not_supported", {}),
    "body over waitress's limit": (
        b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999\r\n\r\n", 413, "body_too_large",
        {"body": "", "body_bytes": 9999999999, "body_truncated": True}),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_request_waitress_refuses_is_one_record_and_a_json_error(server: LiveServer, name: str) -> None:
    request, status, code, recovered = REFUSED[name]
    before = len(server.records())
    got, body, head = answered(exchange(server.url, request))
    assert (got, body["ok"], body["error"]) == (status, False, code)
    assert body["message"] and b"\r\nContent-Type: application/json\r\n" in head
    assert b"\r\nConnection: close\r\n" in head
    record = one_new_record(server, before)  # durable before the answer came
    assert (record["kind"], record["route"], record["http_status"], record["error"]) == (
        "http_error", None, status, code)
    assert record["result"] is None and record["remote_addr"] == "127.0.0.1"
    fields = record["fields"]
    head = request[:request.index(b"\r\n\r\n") + 4]  # the request line, the header lines, the blank line
    line, _, header_lines = head.partition(b"\r\n")
    assert unescape_bytes(fields["request_line"]) == line
    assert unescape_bytes(fields["headers"]) == header_lines
    assert fields["head_truncated"] is False
    for key, value in recovered.items():
        assert (fields | record)[key] == value, key
    assert requests.get(f"{server}/healthz", timeout=10).status_code == 200


def test_an_over_long_head_is_a_431_keeping_its_first_64_kib(server: LiveServer) -> None:
    request = b"GET /postback?cid=abc&pad=" + b"p" * (1024 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    before = len(server.records())
    status, body, _ = answered(exchange(server.url, request))
    assert (status, body["error"]) == (431, "headers_too_large")
    record = one_new_record(server, before)
    fields = record["fields"]
    assert fields["head_truncated"] is True and fields["request_line"].startswith("GET /postback?cid=abc&pad=ppp")
    assert len(fields["request_line"]) == 64 * 1024 and fields["headers"] == ""
    assert (record["method"], record["path"], fields["click_id"]) == ("GET", "/postback", "abc")


def test_a_refused_request_after_a_good_one_on_the_same_connection(server: LiveServer) -> None:
    before = len(server.records())
    response = exchange(server.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ") and b'"error":"invalid_request_line"' in response
    new = server.records()[before:]
    assert [(r["kind"], r["http_status"]) for r in new] == [("health", 200), ("http_error", 400)]


def healthz_unlogged(url: str) -> dict[str, int]:
    return requests.get(f"{url}/healthz", timeout=10).json()["unlogged_requests"]


def test_a_request_never_sent_whole_is_counted_not_logged(server: LiveServer) -> None:
    before, records = healthz_unlogged(server.url), len(server.records())
    with socket.create_connection(address(server.url), timeout=10) as sock:
        sock.sendall(b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\ncid=")
        time.sleep(0.2)  # the server has read it: now the client gives up
    deadline = time.monotonic() + 10
    while healthz_unlogged(server.url)["incomplete"] == before["incomplete"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert healthz_unlogged(server.url)["incomplete"] == before["incomplete"] + 1
    assert [r["kind"] for r in server.records()[records:]] == ["health"] * (len(server.records()) - records)


# ---------------------------------------------------------------- in process


class BrokenDisk:
    """fsync that fails while `broken`."""

    def __init__(self) -> None:
        self.broken = False

    def fsync(self, fd: int) -> None:
        if self.broken:
            raise OSError(errno.EIO, "injected fsync failure")


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[tuple[str, Receiver, BrokenDisk]]:
    """A waitress server in this process (receiver.http_errors installed) whose disk can fail."""
    from clickledger.demo import write_demo_config

    data = tmp_path / "data"
    write_demo_config(data)
    disk = BrokenDisk()
    app = create_app(Settings(data), writer=SegmentWriter(data / "log", fsync=disk.fsync))
    server = create_server(app, host="127.0.0.1", port=0, **waitress_options(2))
    install(server, app.receiver)
    thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", app.receiver, disk
    finally:
        server.close()
        thread.join(10)
        app.receiver.close()


def test_a_refused_request_whose_record_cannot_be_written_is_answered_503(inprocess) -> None:
    url, receiver, disk = inprocess
    disk.broken = True
    status, body, _ = answered(exchange(url, b"GARBAGE\r\n\r\n"))
    assert (status, body["ok"], body["error"]) == (503, False, "log_unavailable")
    disk.broken = False
    status, body, _ = answered(exchange(url, b"GARBAGE\r\n\r\n"))
    assert (status, body["error"]) == (400, "invalid_request_line")
    records = [r for r in _records(receiver) if r["kind"] == "http_error"]
    assert len(records) == 1  # the 503 one left nothing behind


def _records(receiver: Receiver) -> list[dict[str, Any]]:
    from receiver.contract.framing import iter_log

    return list(iter_log(receiver.settings.log_dir))


def test_log_refused_request_never_claims_a_record_it_could_not_write(make_harness, data_dir: Path) -> None:
    disk = BrokenDisk()
    harness = make_harness(data_dir, writer=SegmentWriter(data_dir / "log", fsync=disk.fsync))
    parser = RecordingParser(Adjustments())
    parser.received(b"GET /x?cid=\xff HTTP/1.1\r\n\r\n")
    disk.broken = True
    assert log_refused_request(harness.receiver, parser, "127.0.0.1") == (
        503, {"ok": False, "error": "log_unavailable", "message": "the receiver could not log this request"})
    assert harness.log.new() == []


class FakeServer:
    """What waitress's HTTPChannel asks of its server."""

    def __init__(self) -> None:
        self.adj = Adjustments()
        self.active_channels: dict[int, Any] = {}
        self.tasks: list[Any] = []

    def add_task(self, channel: Any) -> None:
        self.tasks.append(channel)

    def pull_trigger(self) -> None:
        pass


@pytest.fixture
def channel(harness) -> Iterator[Any]:
    ours, theirs = socket.socketpair()
    made = channel_class(harness.receiver)(FakeServer(), ours, ("127.0.0.1", 5), Adjustments(), map={})
    try:
        yield made
    finally:
        theirs.close()
        with contextlib.suppress(OSError):
            made.close()


def test_a_request_cut_off_mid_head_is_counted_incomplete_once(channel, harness) -> None:
    channel.received(b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Ag")
    channel.handle_close()
    channel.handle_close()
    assert harness.receiver.unlogged.snapshot() == {"incomplete": 1, "abandoned": 0}
    assert harness.log.new() == []


def test_an_idle_connection_closing_is_not_a_request(channel, harness) -> None:
    channel.received(b"\r\n")
    channel.handle_close()
    assert harness.receiver.unlogged.snapshot() == {"incomplete": 0, "abandoned": 0}


def test_requests_of_a_client_gone_before_service_are_counted_abandoned(channel, harness) -> None:
    channel.received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(channel.requests) == 2
    channel.connected = False  # the client closed before a worker took the task
    channel.service()
    assert harness.receiver.unlogged.snapshot() == {"incomplete": 0, "abandoned": 2}
    assert harness.log.new() == []


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_escaped_bytes_read_back_exactly(raw: bytes) -> None:
    text = escape_bytes(raw)
    assert unescape_bytes(text) == raw
    assert text.isprintable()
    orjson.dumps(text)  # a record can always hold it
