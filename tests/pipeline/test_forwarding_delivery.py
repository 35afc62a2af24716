"""Delivering to a real HTTP sink on loopback: attempts, states, the retry schedule on an
injected clock, order per conversion, Standard Webhooks signatures, crash safety, points."""

from __future__ import annotations

import base64
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from pipeline.forwarding.forwarder import Forwarder, ForwardingError
from pipeline.forwarding.ledger import read_delivery_log, read_points
from pipeline.forwarding.schedule import RETRY_DELAYS, parse_retry_after
from pipeline.forwarding.sender import CONNECT_TIMEOUT, TOTAL_TIMEOUT, HttpSender, OutgoingRequest
from receiver.contract.datadir import DataDir
from tests.support.clock import FixedClock
from tests.support.forwarding import forwarding_data, set_endpoints
from tests.support.log_builder import LogBuilder, cid
from tests.support.sink import running_sink

START = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"p" * 32).decode()


def endpoint(url: str, events: str = '["approved", "reversed"]', extra: str = "") -> str:
    return f'[[affiliates.postbacks]]\nurl = "{url}"\nevents = {events}\n{extra}\n'


def affiliate(*endpoints: str, points: str = "") -> str:
    return '[[affiliates]]\nid = "aff1"\n' + points + "\n" + "".join(endpoints)


@pytest.fixture
def sink():
    with running_sink() as running:
        yield running


@pytest.fixture
def clock():
    return FixedClock(START)


def data_with(tmp_path, endpoints: str, conversions: int = 1, **kw):
    data = forwarding_data(tmp_path / "data", endpoints)
    b = LogBuilder()
    for n in range(1, conversions + 1):
        b.click(cid(n))
        b.postback(cid(n), amount="10", **kw)
    b.write(data)
    return data, b


def forwarder(data, clock, **kw) -> Forwarder:
    return Forwarder(data, clock=clock, rng=random.Random(1), **kw)


def test_200_is_delivered_once_and_signed(tmp_path, sink):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/ok?c={{click_id}}&e={{event}}",
                                                     extra=f'signing_secret = "{SECRET}"')))
    with Forwarder(data) as fwd:  # the real clock: standardwebhooks checks the timestamp
        report = fwd.run_once()
        assert (report.planned, report.count("delivered")) == (1, 1)
        assert fwd.run_once().attempts == []  # nothing new: nothing sent
    [request] = sink.requests()
    assert request.path == f"/ok?c={cid(1)}&e=approved" and request.method == "GET"
    assert request.delivery_id.startswith("dlv_")
    Webhook(SECRET).verify(request.body, request.headers, json_parse=False)
    with Forwarder(data) as restarted:  # a restart rebuilds the same state from the delivery log
        [delivery] = restarted.state().by_id.values()
        assert (delivery.id, delivery.state, len(delivery.attempts)) == (request.delivery_id, "delivered", 1)
        assert restarted.run_once().attempts == []
    assert len(sink.requests()) == 1


def test_a_post_body_holds_every_macro_and_is_signed(tmp_path, sink):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/ok", extra=f'method = "POST"\n'
                                                     f'signing_secret = "{SECRET}"'), points="points_per_unit = 100"))
    with Forwarder(data) as fwd:
        fwd.run_once()
    [request] = sink.requests()
    body = Webhook(SECRET).verify(request.body, request.headers)
    assert body == orjson.loads(request.body)
    assert (body["event"], body["points"], body["payout"], body["currency"]) == ("approved", 700, "7.00", "USD")
    assert request.headers["content-type"] == "application/json"


def test_500_is_retried_on_the_schedule_until_exhausted(tmp_path, sink, clock):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/fail")))
    fwd = forwarder(data, clock)
    try:
        fwd.run_once()
        times = []
        for _ in range(20):  # bounded: ten attempts are due at most
            [delivery] = fwd.state().by_id.values()
            times.append(delivery.last.started_at)
            if delivery.state != "failed":
                break
            wait = delivery.next_attempt_at - clock.now
            clock.advance(wait - timedelta(milliseconds=1))
            assert fwd.send_due().attempts == []  # not before its time
            clock.advance(timedelta(milliseconds=1))
            assert len(fwd.send_due().attempts) == 1
    finally:
        fwd.close()
    assert delivery.state == "exhausted" and len(delivery.attempts) == len(RETRY_DELAYS) == 10
    assert [a.http_status for a in delivery.attempts] == [500] * 10
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    for gap, planned in zip(gaps, RETRY_DELAYS[1:], strict=True):
        assert planned * 0.9 <= gap <= planned * 1.1
    assert sum(gaps) / 3600 == pytest.approx(75.6, rel=0.1)  # about three days
    assert len(sink.requests()) == 10 and delivery.last.error == "HTTP 500: no"
    # exhausted stays replayable: a resend starts a new schedule with the same id
    with forwarder(data, clock) as again:
        again.reopen([delivery.id], "resend")
        assert [s for _, _, s in again.send_due().attempts] == ["failed"]
    assert {r.path for r in sink.requests()} == {"/fail"}


def test_the_schedule_survives_a_restart(tmp_path, sink, clock):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/fail")))
    with forwarder(data, clock) as fwd:
        fwd.run_once()
        [before] = fwd.state().by_id.values()
    with forwarder(data, clock) as restarted:
        [after] = restarted.state().by_id.values()
        assert after.next_attempt_at == before.next_attempt_at and after.state == "failed"
        assert restarted.run_once().attempts == []  # not due yet
        clock.advance(seconds=6)
        assert len(restarted.run_once().attempts) == 1


def test_410_stops_the_endpoint_and_only_it(tmp_path, sink, clock):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/a/gone"), endpoint(f"{sink.url}/b/ok")),
                        conversions=3)
    with forwarder(data, clock, workers=1) as fwd:
        fwd.run_once()
        states = {(d.planned["endpoint"].split("/")[3], d.state) for d in fwd.state().by_id.values()}
        assert states == {("a", "stopped"), ("b", "delivered")}
        clock.advance(days=5)
        assert fwd.run_once().attempts == []
    assert len(sink.requests("/a/gone")) == 1  # the first answer stopped it: the other two never sent
    assert len(sink.requests("/b/ok")) == 3


@pytest.mark.parametrize(("path", "wait"), [("busy", 120), ("unavailable", 30)])
def test_429_and_503_honour_retry_after(tmp_path, sink, clock, path, wait):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/{path}")))
    with forwarder(data, clock) as fwd:
        fwd.run_once()
        [delivery] = fwd.state().by_id.values()
        assert delivery.state == "failed" and delivery.last.http_status in (429, 503)
        assert delivery.next_attempt_at == delivery.last.finished_at + timedelta(seconds=wait)
        assert "Retry-After" in delivery.last.error


def test_retry_after_as_a_date():
    now = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 02 May 2024 09:01:00 GMT", now) == 60
    assert parse_retry_after("soon", now) is None and parse_retry_after("7", now) == 7


def test_a_redirect_is_a_failure_and_is_not_followed(tmp_path, sink, clock):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/redirect")))
    with forwarder(data, clock) as fwd:
        fwd.run_once()
        [delivery] = fwd.state().by_id.values()
    assert delivery.state == "failed" and delivery.last.http_status == 302 and "redirect" in delivery.last.error
    assert [r.path for r in sink.requests()] == ["/redirect"]


def test_a_timeout_and_a_reset_are_failures(tmp_path, sink, clock):
    sink.slow_seconds = 3
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/a/slow"), endpoint(f"{sink.url}/b/reset")))
    sender = HttpSender(allow_private_targets=True, total_timeout=0.5)
    with forwarder(data, clock, sender=sender) as fwd:
        fwd.run_once()
        by_path = {d.planned["endpoint"].split("/")[-1]: d for d in fwd.state().by_id.values()}
    slow, reset = by_path["slow"], by_path["reset"]
    assert slow.state == reset.state == "failed"
    assert slow.last.error.startswith("timeout") and slow.last.http_status is None
    assert slow.last.duration_ms < 2000
    assert "reset" in reset.last.error or "closed the connection" in reset.last.error
    assert (CONNECT_TIMEOUT, TOTAL_TIMEOUT) == (3.0, 15.0)
    default = HttpSender()
    assert (default.connect_timeout, default.total_timeout) == (3.0, 15.0)


def test_a_connection_refused_is_a_failure(tmp_path, clock):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = HttpSender(allow_private_targets=True).send(OutgoingRequest("d", "GET", f"http://127.0.0.1:{port}/"))
    assert result.http_status is None and "refused" in result.error


def test_private_targets_are_refused_when_sending(sink):
    url = f"http://pub.example:{sink.server_address[1]}/ok"
    to_loopback = lambda host, port: ["127.0.0.1"]  # noqa: E731 - a name that resolves to us
    refused = HttpSender(resolver=to_loopback).send(OutgoingRequest("d", "GET", url))
    assert refused.http_status is None and refused.error.startswith("refused") and sink.requests() == []
    for address in ("10.0.0.1", "169.254.169.254", "::1", "fe80::1", "0.0.0.0"):
        result = HttpSender(resolver=lambda h, p, a=address: [a]).send(OutgoingRequest("d", "GET", url))
        assert result.error.startswith("refused"), address
    allowed = HttpSender(allow_private_targets=True, resolver=to_loopback).send(OutgoingRequest("d", "GET", url))
    assert allowed.http_status == 200 and sink.requests()[0].headers["host"].startswith("pub.example")


def test_a_reversal_never_overtakes_its_approval(tmp_path, sink, clock):
    sink.flaky_failures = 2
    data = forwarding_data(tmp_path / "data", affiliate(endpoint(f"{sink.url}/flaky?e={{event}}",
                                                                 events='["pending", "approved", "reversed"]'),
                                                        points="points_per_unit = 10"))
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10", status="pending", status_updates=True)
    b.postback(cid(1), status="approved", result="duplicate", status_updates=True)
    b.postback(cid(1), status="reversed", result="duplicate", status_updates=True)
    b.write(data)
    with forwarder(data, clock) as fwd:
        fwd.run_once()
        for _ in range(12):  # bounded
            clock.advance(minutes=31)
            fwd.send_due()
        states = [(d.planned["event"], d.state, len(d.attempts)) for d in fwd.state().by_id.values()]
    assert states == [("pending", "delivered", 3), ("approved", "delivered", 3), ("reversed", "delivered", 3)]
    events = [r.path.split("e=")[1] for r in sink.requests()]
    assert events == ["pending"] * 3 + ["approved"] * 3 + ["reversed"] * 3
    entries = read_points(DataDir(data).points_path).entries
    assert [(e["kind"], e["points"]) for e in entries] == [("credit", 70), ("debit", 70)]


def test_an_attempt_cut_short_is_retried_with_the_same_id(tmp_path, sink, clock):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/ok")))
    with forwarder(data, clock) as fwd:
        fwd.sync()
        [delivery] = fwd.state().by_id.values()
        fwd.log.append([{"kind": "attempt", "delivery_id": delivery.id, "attempt": 1,
                         "started_at": "2024-05-02T09:00:00.000000Z"}])  # killed before its outcome
    path = DataDir(data).deliveries_path
    with path.open("ab") as torn:
        torn.write(b'{"crc32":"00000000","kind":"outc')  # and mid-write of the next line
    with forwarder(data, clock) as restarted:
        [cut] = restarted.state().by_id.values()
        assert cut.state == "pending" and "interrupted" in cut.last.error and cut.next_attempt_at <= clock.now
        report = restarted.send_due()
        assert [s for _, _, s in report.attempts] == ["delivered"]
        [after] = restarted.state().by_id.values()
        assert [a.number for a in after.attempts] == [1, 2] and after.id == delivery.id
    records, torn_line = read_delivery_log(path)
    assert torn_line is None and [r["kind"] for r in records] == ["planned", "attempt", "attempt", "outcome"]


def test_one_forwarder_per_data_directory(tmp_path, clock):
    data, _ = data_with(tmp_path, affiliate(endpoint("https://pub.example/ok")))
    with forwarder(data, clock), pytest.raises(ForwardingError, match="another forwarder"):
        Forwarder(data)


def test_a_changed_config_reaches_the_next_pass(tmp_path, sink, clock):
    data, b = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/a/ok")))
    with forwarder(data, clock) as fwd:
        fwd.run_once()
        set_endpoints(data, affiliate(endpoint(f"{sink.url}/a/ok"), endpoint(f"{sink.url}/b/ok")))
        fwd.run_once()
    assert [r.path for r in sink.requests()] == ["/a/ok", "/b/ok"]


def test_the_documented_verification_example_accepts_our_deliveries(tmp_path, sink):
    """docs/forwarding.md's 10-line example, run as written against a delivery we signed."""
    import re

    from tests.support.paths import REPO

    doc = (REPO / "docs" / "forwarding.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    assert len(example.strip().splitlines()) <= 12
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/ok", extra=f'signing_secret = "{SECRET}"')))
    with Forwarder(data) as fwd:
        fwd.run_once()
    [request] = sink.requests()
    credited = []
    scope = {"credit_once": credited.append}
    exec(example.replace('"whsec_..."', repr(SECRET)), scope)  # noqa: S102 - the documented example
    assert scope["receive"](request.body, request.headers) == 200 and credited == [request.delivery_id]
    forged = {**request.headers, "webhook-id": "dlv_other"}
    assert scope["receive"](request.body, forged) == 401


def test_an_endpoint_taken_out_of_the_config_gets_nothing_more_and_says_so(tmp_path, sink, clock):
    from pipeline.forwarding.tables import ENDPOINT_GONE, build_delivery_tables
    from pipeline.runner import load_pipeline_config

    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/a/fail"), endpoint(f"{sink.url}/b/ok")))
    with forwarder(data, clock) as fwd:
        fwd.run_once()
        set_endpoints(data, affiliate(endpoint(f"{sink.url}/b/ok")))
        clock.advance(minutes=10)
        assert fwd.run_once().attempts == []
    assert len(sink.requests("/a/fail")) == 1
    deliveries, _ = build_delivery_tables(data, load_pipeline_config(data))
    gone = deliveries.filter(deliveries["endpoint"].str.contains("/a/fail"))
    assert gone["state"].to_list() == ["failed"] and gone["last_error"].to_list() == [ENDPOINT_GONE]


def test_the_default_sender_follows_allow_private_targets(tmp_path, sink, clock):
    data, _ = data_with(tmp_path, affiliate(endpoint(f"{sink.url}/ok")))
    with forwarder(data, clock) as fwd:
        fwd.sync()
        assert fwd.sender.allow_private_targets is True
        fwd.config = replace(fwd.config, allow_private_targets=False)
        assert fwd.sender.allow_private_targets is False
        [(delivery, result, state)] = fwd.send_due().attempts
    assert state == "failed" and result.error.startswith("refused") and sink.requests() == []


def test_the_host_header_names_the_url_host_and_port(sink):
    url = f"http://pub.example:{sink.server_address[1]}/ok"
    sender = HttpSender(allow_private_targets=True, resolver=lambda host, port: ["127.0.0.1"])
    assert sender.send(OutgoingRequest("d", "POST", url, b"{}")).http_status == 200
    [request] = sink.requests()
    assert request.headers["host"] == f"pub.example:{sink.server_address[1]}" and request.body == b"{}"


def test_https_checks_the_certificate_of_the_url_host(tmp_path):
    """A TLS endpoint (pub.example on loopback, a self-signed certificate made with openssl):
    refused when its certificate is not trusted, delivered when it is."""
    import shutil
    import ssl
    import subprocess
    import threading

    from tests.support.sink import Sink

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=pub.example", "-addext", "subjectAltName=DNS:pub.example"],
                   check=True, capture_output=True, timeout=60)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    sink = Sink()
    sink.socket = server_context.wrap_socket(sink.socket, server_side=True)
    thread = threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"https://pub.example:{sink.server_address[1]}/ok"
        to_loopback = lambda host, port: ["127.0.0.1"]  # noqa: E731
        untrusted = HttpSender(allow_private_targets=True, resolver=to_loopback).send(OutgoingRequest("d", "GET", url))
        assert untrusted.http_status is None and untrusted.error.startswith("tls") and "verify" in untrusted.error
        trusting = ssl.create_default_context(cafile=str(cert))
        sent = HttpSender(allow_private_targets=True, resolver=to_loopback, tls_context=trusting).send(
            OutgoingRequest("d", "GET", url))
        assert sent.http_status == 200 and sink.requests()[0].headers["host"].startswith("pub.example")
    finally:
        sink.shutdown()
        sink.server_close()
        thread.join(timeout=5)


def test_a_rate_added_later_makes_an_approval_count_and_it_is_told(tmp_path, sink, clock):
    data = forwarding_data(tmp_path / "data", affiliate(endpoint(f"{sink.url}/ok?c={{click_id}}")))
    b = LogBuilder()
    b.click(cid(1), offer_id="peer-app")
    b.postback(cid(1), amount="5", currency="JPY")  # no rate for JPY yet: the approval does not count
    b.click(cid(2))
    b.postback(cid(2), amount="5")
    b.write(data)
    with forwarder(data, clock) as fwd:
        assert fwd.run_once().planned == 1
        assert fwd.run_once().planned == 0  # nothing new in the log
        with (data / "fx_rates.csv").open("a", encoding="utf-8") as rates:
            rates.write("2024-04-01,JPY,0.0065\n")
        assert fwd.run_once().planned == 1
    assert sorted(r.path for r in sink.requests()) == sorted([f"/ok?c={cid(1)}", f"/ok?c={cid(2)}"])
