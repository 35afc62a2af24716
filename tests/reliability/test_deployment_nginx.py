"""The production deployment of docs/deployment.md, tested (issue 15): nginx from its shipped
config (docs/deploy/nginx.conf) terminating TLS on loopback in front of a real receiver.

Checked: postbacks pass over TLS; the client address the receiver logs and its allowlist
judges is the one nginx saw (the client binds 127.0.0.7 or 127.0.0.8, nginx reaches the
receiver from 127.0.0.1, the config's trusted proxy), a forged X-Forwarded-For changing
nothing; /metrics is not reachable through the proxy; 300 TLS connections trickling heads
through nginx do not starve postbacks (p99 printed). Skipped only where no nginx binary is
installed, and never in CI (.ci/run installs Debian's nginx).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickledger.demo import DEMO_CONFIG, free_port
from tests.support.live_server import LiveServer, start_live_server, stop_live_server
from tests.support.proxy import (
    Nginx,
    missing_tools,
    self_signed_certificate,
    start_nginx,
    stop_nginx,
)
from tests.support.slowloris import Slowloris, probe_postbacks, send_postback

pytestmark = [pytest.mark.slow, pytest.mark.server]

CLIENT, OTHER_CLIENT, ATTACKER = "127.0.0.7", "127.0.0.8", "127.0.0.2"

# The demo network behind a proxy: nginx reaches the receiver from 127.0.0.1, and one partner
# accepts postbacks only from CLIENT.
FENCED = f"""
[[partners]]
id = "fenced"
api_key = "fenced-key"
allowed_ips = ["{CLIENT}/32"]

[[offers]]
id = "fenced-offer"
partner = "fenced"
url = "https://fenced.example/go"

[[links]]
slug = "fenced-aff1"
offer = "fenced-offer"
affiliate = "aff1"
"""


def proxied_config(public_url: str) -> str:
    text = DEMO_CONFIG.format(public_url=public_url)
    line = f'public_url = "{public_url}"\n'
    assert line in text
    return text.replace(line, line + 'trusted_proxies = ["127.0.0.1/32"]\n') + FENCED


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nginx, LiveServer, ssl.SSLContext]]:
    missing = missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the deployment ({missing}): .ci/run installs Debian's nginx and openssl")
        pytest.skip(f"{missing}: the deployment test needs them")
    root = tmp_path_factory.mktemp("deployment")
    cert, key = self_signed_certificate(root / "tls")
    proxy_port = free_port()
    public_url = f"https://localhost:{proxy_port}"

    def write_config(data: Path, url: str) -> None:
        data.mkdir(parents=True, exist_ok=True)
        (data / "config.toml").write_text(proxied_config(public_url), encoding="utf-8")

    live = start_live_server(root / "data", write_config, threads=64)
    try:
        upstream_port = int(live.rsplit(":", 1)[1])
        nginx = start_nginx(root / "nginx", proxy_port, upstream_port, cert, key)
        try:
            tls = ssl.create_default_context(cafile=str(cert))
            yield nginx, live, tls
        finally:
            stop_nginx(nginx)
    finally:
        stop_live_server(live)


def proxied_get(nginx: Nginx, tls: ssl.SSLContext, path: str, source: str = CLIENT,
                headers: dict[str, str] | None = None) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", nginx.port, timeout=10, source_address=(source, 0), context=tls)
    try:
        conn.request("GET", path, headers={"Host": "localhost", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def click_through(nginx: Nginx, tls: ssl.SSLContext, slug: str) -> str:
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", nginx.port, timeout=10, source_address=(CLIENT, 0), context=tls)
    try:
        conn.request("GET", f"/t/{slug}", headers={"Host": "localhost"})
        response = conn.getresponse()
        response.read()
        assert response.status == 302, response.status
        location = response.getheader("Location") or ""
    finally:
        conn.close()
    return location.split("click_id=")[1].split("&")[0]


def test_postbacks_pass_and_the_logged_client_is_the_one_nginx_saw(deployment) -> None:
    nginx, live, tls = deployment
    click_id = click_through(nginx, tls, "fenced-aff1")
    status, body = proxied_get(nginx, tls, f"/api/postback?api_key=fenced-key&click_id={click_id}&transaction_id=tx1"
                                           f"&payout=2.50&currency=USD",
                               headers={"X-Forwarded-For": "198.51.100.66"})  # forged by the client
    assert status == 200, body
    assert '"recorded"' in body
    record = next(r for r in reversed(live.records()) if r["query"].find("transaction_id=tx1") >= 0)
    assert record["remote_addr"] == "127.0.0.1"  # the proxy
    assert record["forwarded_for"] == f"198.51.100.66, {CLIENT}"
    assert record["fields"]["client_ip"] == CLIENT  # the right-most hop nginx added, not the forged one
    # nginx's own access log saw the same client
    time.sleep(0.2)
    lines = [line for line in nginx.access_log.read_text().splitlines() if "transaction_id=tx1" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{CLIENT} "), lines


def test_the_allowlist_judges_the_real_client_behind_the_proxy(deployment) -> None:
    nginx, live, tls = deployment
    click_id = click_through(nginx, tls, "fenced-aff1")
    status, body = proxied_get(nginx, tls, f"/api/postback?api_key=fenced-key&click_id={click_id}&transaction_id=tx2",
                               source=OTHER_CLIENT, headers={"X-Forwarded-For": CLIENT})  # forging the allowed one
    assert status == 403, body
    assert '"ip_not_allowed"' in body
    record = next(r for r in reversed(live.records()) if "transaction_id=tx2" in r["query"])
    assert (record["error"], record["fields"]["client_ip"]) == ("ip_not_allowed", OTHER_CLIENT)
    status, body = proxied_get(nginx, tls, f"/api/postback?api_key=fenced-key&click_id={click_id}&transaction_id=tx2")
    assert status == 200 and '"recorded"' in body, body


def test_metrics_are_not_served_through_the_proxy(deployment) -> None:
    nginx, live, tls = deployment
    status, _ = proxied_get(nginx, tls, "/metrics")
    assert status == 404
    assert not any(r["path"] == "/metrics" for r in live.records())


def test_a_body_that_stalls_is_cut_off_by_nginx_and_never_reaches_the_receiver(deployment) -> None:
    nginx, live, tls = deployment
    raw = socket.create_connection(("127.0.0.1", nginx.port), timeout=5, source_address=(CLIENT, 0))
    with tls.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"POST /api/postback?stalled-body=1 HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nclick_id=")
        started = time.monotonic()
        sock.settimeout(20)
        with contextlib.suppress(OSError):
            while sock.recv(4096):  # until nginx closes (its 408, if any, then EOF)
                pass
        took = time.monotonic() - started
    assert 9 <= took < 15, took  # client_body_timeout 10s
    assert not any("stalled-body" in r["query"] for r in live.records())


def test_slowloris_against_the_proxy_does_not_starve_postbacks(deployment) -> None:
    nginx, live, tls = deployment
    click_id = click_through(nginx, tls, "fenced-aff1")
    address = ("127.0.0.1", nginx.port)

    def send(n: int) -> int:
        return send_postback(address, f"/api/postback?api_key=fenced-key&click_id={click_id}&transaction_id=slow-{n}",
                             source=CLIENT, tls=tls)

    with Slowloris(address, connections=300, source=ATTACKER, tls=tls) as attack:
        time.sleep(5)  # every attacking connection open (each a TLS handshake) before measuring
        result = probe_postbacks(send, seconds=30)
    print(f"\nslowloris through nginx (TLS), 300 connections at 1 byte/s: {result.summary()}; "
          f"attacking connections opened {attack.opened}, closed by nginx {attack.closed_by_server}")
    assert attack.opened >= 300
    assert attack.closed_by_server >= 300  # client_header_timeout: each head cut off 10 s after it began
    assert result.failures == 0
    assert {status for _, status in result.samples} == {200}
    assert result.percentile(99) < 1.0, result.summary()
    records = [r for r in live.records() if "transaction_id=slow-" in r["query"]]
    assert len(records) == len(result.samples)
    assert all(r["fields"]["client_ip"] == CLIENT for r in records)
