"""A publisher's postback endpoint on loopback for the forwarder's tests: it records every
request and answers by path (after an optional `/<tag>` prefix, so a test can tell endpoints apart):

    /ok         200          /fail    500          /gone     410
    /busy       429, Retry-After: 120               /unavailable  503, Retry-After: 30
    /redirect   302 to /ok   /slow    no answer for `slow_seconds`
    /reset      the connection reset (RST) before any answer
    /flaky      500 the first `flaky_failures` times, then 200

Started on a free port by `running_sink()`, stopped when its `with` block ends.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None  # what we answered (None: reset or no answer)
    at: float = field(default_factory=time.monotonic)

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get("webhook-id")


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.slow_seconds = 5.0
        self.flaky_failures = 1
        self.answer_delay = 0.0  # seconds before every answer (so a kill can land mid-request)
        self._flaky_seen: dict[str, int] = {}
        self.release = threading.Event()  # set when stopping: slow answers stop waiting

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, item: Received) -> None:
        with self.lock:
            self.received.append(item)

    def requests(self, path_part: str = "") -> list[Received]:
        with self.lock:
            return [r for r in self.received if path_part in r.path]


class _Handler(BaseHTTPRequestHandler):
    server: Sink
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        route = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        status, extra = 200, {}
        if route == "fail":
            status = 500
        elif route == "gone":
            status = 410
        elif route == "busy":
            status, extra = 429, {"Retry-After": "120"}
        elif route == "unavailable":
            status, extra = 503, {"Retry-After": "30"}
        elif route == "redirect":
            status, extra = 302, {"Location": "/ok"}
        elif route == "flaky":
            key = headers.get("webhook-id") or self.path
            seen = self.server._flaky_seen.get(key, 0)
            self.server._flaky_seen[key] = seen + 1
            status = 500 if seen < self.server.flaky_failures else 200
        elif route == "slow":
            self.server.record(Received(self.command, self.path, headers, body, None))
            self.server.release.wait(self.server.slow_seconds)
            self.close_connection = True
            return
        elif route == "reset":
            self.server.record(Received(self.command, self.path, headers, body, None))
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if self.server.answer_delay:
            time.sleep(self.server.answer_delay)
        self.server.record(Received(self.command, self.path, headers, body, status))
        payload = b"ok" if status == 200 else b"no"
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _handle
    do_POST = _handle


@contextmanager
def running_sink() -> Iterator[Sink]:
    sink = Sink()
    thread = threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.release.set()
        sink.shutdown()
        sink.server_close()
        thread.join(timeout=5)
