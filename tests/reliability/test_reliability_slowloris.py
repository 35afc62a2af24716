"""Slow clients cannot starve postbacks (issue 15, point 1): receiver.connections.

Fast tests check each measure on an in-process waitress (a head that misses its deadline is
closed, the oldest waiting connections are shed near the limit, the per-address cap, and
refused heads stay refused and logged); the slow test runs 300 trickling connections
against a real receiver process for 30 s and prints the postbacks' p99.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from waitress.server import create_server

from clickledger.demo import free_port, stop_receiver, wait_healthy, write_demo_config
from receiver.app import Receiver, Settings, create_app
from receiver.connections import ConnectionLimits, GuardCounts, guard
from receiver.contract.framing import iter_log
from receiver.http_errors import install
from receiver.server import waitress_options
from tests.support.live_server import start_live_server, stop_live_server
from tests.support.slowloris import Slowloris, peerclick_postbacks, probe_postbacks

pytestmark = pytest.mark.server


class Served:
    def __init__(self, url: str, port: int, receiver: Receiver, counts: GuardCounts) -> None:
        self.url, self.port, self.receiver, self.counts = url, port, receiver, counts

    def records(self) -> list[dict[str, Any]]:
        return list(iter_log(self.receiver.settings.log_dir))


@contextlib.contextmanager
def guarded_server(data: Path, limits: ConnectionLimits, exempt: Any = None, **options: Any) -> Iterator[Served]:
    """A waitress server in this process, with receiver.http_errors and the guard installed."""
    write_demo_config(data)
    app = create_app(Settings(data))
    server = create_server(app, host="127.0.0.1", port=0, **{**waitress_options(2), **options})
    install(server, app.receiver)
    counts = guard(server, limits, **({"exempt": exempt} if exempt else {}))
    thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
    thread.start()
    port = server.effective_port
    try:
        yield Served(f"http://127.0.0.1:{port}", port, app.receiver, counts)
    finally:
        server.close()
        thread.join(10)
        app.receiver.close()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (reading what it sends)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(4096):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def test_a_head_trickled_past_its_deadline_is_closed_though_it_never_goes_silent(tmp_path: Path) -> None:
    with guarded_server(tmp_path / "data", ConnectionLimits(head_timeout=1.0, shed_oldest=False)) as served:
        with connect(served.port) as slow:
            started = time.monotonic()
            closed = False
            for byte in b"GET /postback?cid=slow HTTP/1.1\r\nHost: x\r\nX-Filler: aaaaaaaaaaaaaaaaaaaaaaaa":
                with contextlib.suppress(OSError):
                    slow.sendall(bytes([byte]))
                if closed_by_server(slow, 0.1):  # one byte every 0.1 s: never idle for channel_timeout
                    closed = True
                    break
            took = time.monotonic() - started
        assert closed, "the trickling connection was still open after its head deadline"
        assert 0.9 <= took < 3.5, took  # the deadline (1 s) plus at most the maintenance pass (1 s)
        assert served.counts.snapshot()["head_timeout"] == 1
        assert served.receiver.unlogged.snapshot()["incomplete"] == 1  # begun, never finished: counted
        # a whole request on time is answered as ever
        assert requests.get(f"{served.url}/healthz", timeout=5).status_code == 200


def test_a_connection_that_never_sends_anything_is_closed_at_the_head_deadline(tmp_path: Path) -> None:
    with guarded_server(tmp_path / "data", ConnectionLimits(head_timeout=1.0, shed_oldest=False)) as served:
        with connect(served.port) as silent:
            assert closed_by_server(silent, 3.5)
        assert served.counts.snapshot()["head_timeout"] == 1
        assert served.receiver.unlogged.snapshot()["incomplete"] == 0  # nothing was sent: nothing lost


def test_near_the_connection_limit_the_oldest_waiting_connections_are_shed(tmp_path: Path) -> None:
    limits = ConnectionLimits(head_timeout=None, shed_oldest=True, shed_headroom=4)
    with guarded_server(tmp_path / "data", limits, connection_limit=24) as served:
        hogs = []
        try:
            for _ in range(30):  # more than the limit: without shedding the server stops accepting
                sock = connect(served.port, "127.0.0.2")
                sock.sendall(b"GET /postback?cid=hog HTTP/1.1\r\n")
                hogs.append(sock)
                time.sleep(0.01)
            started = time.monotonic()
            answer = requests.get(f"{served.url}/healthz", timeout=5)
            took = time.monotonic() - started
            assert answer.status_code == 200
            assert took < 1.0, took
            shed = served.counts.snapshot()["shed"]
            assert shed >= 30 - 24 + 4, shed
            # the first ones opened are the ones closed
            assert all(closed_by_server(sock, 1.0) for sock in hogs[:shed - 1])
            assert not closed_by_server(hogs[-1], 0.2)
        finally:
            for sock in hogs:
                sock.close()


def test_without_shedding_a_full_server_keeps_a_postback_waiting(tmp_path: Path) -> None:
    """The failure the shedding fixes: waitress alone, at its limit, accepts nothing more."""
    limits = ConnectionLimits(head_timeout=None, shed_oldest=False)
    with guarded_server(tmp_path / "data", limits, connection_limit=24) as served:
        hogs = [connect(served.port, "127.0.0.2") for _ in range(30)]
        try:
            for sock in hogs:
                sock.sendall(b"GET / HTTP/1.1\r\n")
            with pytest.raises(requests.exceptions.Timeout):
                requests.get(f"{served.url}/healthz", timeout=1.5)
        finally:
            for sock in hogs:
                sock.close()


def test_the_per_address_cap_closes_connections_past_it_except_for_exempt_addresses(tmp_path: Path) -> None:
    limits = ConnectionLimits(head_timeout=None, shed_oldest=False, max_per_address=3)
    with guarded_server(tmp_path / "data", limits, exempt=lambda address: address == "127.0.0.3") as served:
        capped = [connect(served.port, "127.0.0.2") for _ in range(5)]
        exempt = [connect(served.port, "127.0.0.3") for _ in range(5)]
        try:
            assert [closed_by_server(sock, 1.0) for sock in capped] == [False, False, False, True, True]
            assert not any(closed_by_server(sock, 0.2) for sock in exempt)
            assert served.counts.snapshot()["per_address"] == 2
            capped[0].close()  # a slot frees: the address may connect again
            time.sleep(0.3)
            with connect(served.port, "127.0.0.2") as again:
                again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                again.settimeout(5)
                assert again.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for sock in capped + exempt:
                sock.close()


def test_oversized_and_invalid_heads_stay_refused_and_logged_under_the_guard(tmp_path: Path) -> None:
    with guarded_server(tmp_path / "data", ConnectionLimits(head_timeout=2.0)) as served:
        answers = []
        for raw in (b"GET /postback?cid=" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n",
                    b"GET /a b c\x01 HTTP/1.1\r\nHost: x\r\n\r\n"):
            with connect(served.port) as sock:
                with contextlib.suppress(OSError):
                    sock.sendall(raw)
                sock.settimeout(5)
                answers.append(sock.recv(4096).split(b" ", 2)[1])
        assert answers == [b"431", b"400"]
        errors = [r["error"] for r in served.records() if r["kind"] == "http_error"]
        assert errors == ["headers_too_large", "invalid_request_line"]
        assert served.counts.snapshot() == {"head_timeout": 0, "shed": 0, "per_address": 0}


def test_connection_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="head_timeout"):
        ConnectionLimits(head_timeout=0)
    with pytest.raises(ValueError, match="max_per_address"):
        ConnectionLimits(max_per_address=0)


@pytest.mark.slow
def test_300_trickling_connections_do_not_starve_postbacks(tmp_path: Path) -> None:
    """Issue 15's figure: p99 of a normal postback under 1 s while 300 connections trickle heads."""
    live = start_live_server(tmp_path / "data", threads=64)
    try:
        location = requests.get(f"{live}/t/peer-aff3", allow_redirects=False, timeout=5).headers["Location"]
        click_id = location.split("clickid=")[1].split("&")[0]
        port = int(live.rsplit(":", 1)[1])
        with Slowloris(("127.0.0.1", port), connections=300, source="127.0.0.2") as attack:
            time.sleep(3)  # every attacking connection open before measuring
            result = probe_postbacks(peerclick_postbacks(("127.0.0.1", port), click_id), seconds=30)
        print(f"\nslowloris, 300 connections at 1 byte/s, real receiver (64 threads): {result.summary()}; "
              f"attacking connections opened {attack.opened}, closed by the server {attack.closed_by_server}")
        assert attack.opened >= 300
        assert result.failures == 0
        assert result.percentile(99) < 1.0, result.summary()
        statuses = {status for _, status in result.samples}
        assert statuses == {200}, statuses
    finally:
        stop_live_server(live)


def test_serve_takes_the_limits_from_its_command_line(tmp_path: Path) -> None:
    write_demo_config(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clickledger.cli", "serve", "--data", str(tmp_path), "--port", str(port),
         "--threads", "2", "--head-timeout", "1", "--max-connections-per-address", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc=proc)
        first, second, third = (connect(port, "127.0.0.2") for _ in range(3))
        with first, second, third:
            assert closed_by_server(third, 1.0)  # past the cap of 2
            assert not closed_by_server(first, 0.3)
            assert closed_by_server(first, 3.5)  # the 1 s head deadline
    finally:
        stop_receiver(proc)


@pytest.mark.parametrize("option, value, message", [
    ("--head-timeout", "0", "not a positive number of seconds"),
    ("--head-timeout", "soon", "not a positive number of seconds"),
    ("--max-connections-per-address", "0", "not a whole number of at least 1"),
])
def test_serve_refuses_nonsense_limits(tmp_path: Path, option: str, value: str, message: str) -> None:
    write_demo_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "clickledger.cli", "serve", "--data", str(tmp_path),
                             option, value], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
