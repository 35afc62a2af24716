"""The demo's publisher: two affiliates' postback endpoints on a local sink, told about their
conversions by the forwarder while `make demo` sends its traffic.

The sink (an HTTP server on a free loopback port, up only while the demo runs) checks each
delivery's Standard Webhooks signature, answers 200, and answers the first attempt of every
seventh delivery 503 with Retry-After: 1, so the demo shows a retry of the same delivery id.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from receiver.contract.datadir import DataDir

# the demo publisher's key (published here, like the demo network's api keys)
DEMO_SIGNING_SECRET = "whsec_" + base64.b64encode(b"clickledger demo publisher key!!").decode()
DEMO_PUBLISHERS = """
# The demo's publishers (added by `clickledger demo`): their endpoints are the demo's local
# sink, which listens only while the demo runs (docs/forwarding.md).
[[affiliates]]
id = "aff1"
points_per_unit = 1000

[[affiliates.postbacks]]
url = "{sink}/aff1/cb?click={{click_id}}&tx={{transaction_id}}&status={{status}}&payout={{payout}}&cur={{currency}}&pts={{points}}&sub1={{sub1}}&token=demo-token-aff1-0001"
events = ["approved", "reversed"]
signing_secret = "{secret}"

[[affiliates]]
id = "aff2"

[[affiliates.postbacks]]
url = "{sink}/aff2/postback"
method = "POST"
events = ["pending", "approved", "rejected", "reversed"]
signing_secret = "{secret}"
"""


@dataclass
class Received:
    method: str
    path: str
    delivery_id: str
    status: int
    signed: bool


class DemoPublisher(ThreadingHTTPServer):
    """The sink: records what it received, checks signatures, refuses some first attempts."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._seen: set[str] = set()
        self._count = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer_for(self, delivery_id: str) -> int:
        with self.lock:
            if delivery_id in self._seen:
                return 200
            self._seen.add(delivery_id)
            self._count += 1
            return 503 if self._count % 7 == 0 else 200


class _Handler(BaseHTTPRequestHandler):
    server: DemoPublisher
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _handle(self) -> None:
        from pipeline.forwarding.render import sign

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        delivery_id = self.headers.get("webhook-id", "")
        try:
            timestamp = int(self.headers.get("webhook-timestamp", ""))
            expected = sign(DEMO_SIGNING_SECRET.encode(), delivery_id, timestamp, body)
            signed = expected in self.headers.get("webhook-signature", "").split()
        except ValueError:
            signed = False
        status = self.server.answer_for(delivery_id) if signed else 401
        with self.server.lock:
            self.server.received.append(Received(self.command, self.path, delivery_id, status, signed))
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = _handle
    do_POST = _handle


def add_demo_publishers(data_dir: Path, sink_url: str) -> None:
    """Add the demo publishers to DATA/config.toml (and allow_private_targets, for the local sink)."""
    path = DataDir(data_dir).config_path
    text = path.read_text(encoding="utf-8")
    cut = text.index("\n[[")
    allow = "\n# the demo publisher's sink is on this machine\nallow_private_targets = true\n"
    text = text[:cut] + allow + text[cut:] + DEMO_PUBLISHERS.format(sink=sink_url, secret=DEMO_SIGNING_SECRET)
    path.write_text(text, encoding="utf-8")


def forward_while(data_dir: Path, traffic: Callable[[], Any], settle_seconds: float = 8.0) -> tuple[Any, list[str]]:
    """Run `traffic()` with the demo publisher up and `forward --follow` running in this process;
    then let the retries finish (at most `settle_seconds`) and stop. (traffic's result, lines
    that describe what the publisher was told)."""
    from pipeline.errors import PipelineError
    from pipeline.forwarding.forwarder import Forwarder

    publisher = DemoPublisher()
    server = threading.Thread(target=publisher.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    server.start()
    add_demo_publishers(data_dir, publisher.url)
    stop = threading.Event()
    errors: list[str] = []

    def follow() -> None:
        with Forwarder(data_dir) as forwarder:
            while not stop.is_set():
                try:
                    forwarder.follow(stop)
                except PipelineError as exc:
                    errors.append(str(exc))
                    stop.wait(1)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        result = traffic()
        deadline = time.monotonic() + settle_seconds
        while time.monotonic() < deadline and not _settled(data_dir):
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)
        publisher.shutdown()
        publisher.server_close()
    return result, describe(data_dir, publisher, errors)


def _settled(data_dir: Path) -> bool:
    from pipeline.forwarding.ledger import read_delivery_log
    from pipeline.forwarding.state import fold

    records, _ = read_delivery_log(DataDir(data_dir).deliveries_path)
    deliveries = fold(records).by_id.values()
    return bool(deliveries) and all(d.state != "pending" and d.state != "failed" for d in deliveries)


def describe(data_dir: Path, publisher: DemoPublisher, errors: list[str]) -> list[str]:
    from pipeline.forwarding.ledger import read_delivery_log
    from pipeline.forwarding.state import fold

    records, _ = read_delivery_log(DataDir(data_dir).deliveries_path)
    deliveries = list(fold(records).by_id.values())
    states: dict[str, int] = {}
    for d in deliveries:
        states[d.state] = states.get(d.state, 0) + 1
    received = publisher.received
    retried = len(received) - len({r.delivery_id for r in received})
    lines = [f"forwarder: {len(deliveries)} deliveries to the demo publisher at {publisher.url} "
             f"({', '.join(f'{s} {n}' for s, n in sorted(states.items()))}); it received {len(received)} "
             f"requests, {sum(r.signed for r in received)} with a valid signature, {retried} retries of a "
             "delivery id it had answered 503"]
    for r in received[:3]:
        lines.append(f"  e.g. {r.method} {r.path[:110]} webhook-id {r.delivery_id} -> {r.status}")
    lines.append(f"  list them: clickledger deliveries --data {data_dir}")
    lines += [f"  forwarder warning: {e}" for e in errors[:3]]
    return lines
