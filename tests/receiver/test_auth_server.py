"""Postback authentication through a real waitress process.

waitress must hand X-Forwarded-For to the app (the app decides whom to trust), signatures
must verify over the bytes as they cross the wire, and a rotated key must be refused by
the very next request. Every refusal leaves exactly one log record with its error.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from receiver.postbacks import sign, signing_message
from tests.support.harness import read_log
from tests.support.live_server import LiveServer, start_live_server, stop_live_server
from tests.support.network import AUTH_CONFIG, SIGNING_SECRET, rewrite_config
from tests.support.paths import REPO

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    def write(data: Path, url: str) -> None:
        (data / "config.toml").write_text(AUTH_CONFIG, encoding="utf-8")

    live = start_live_server(tmp_path_factory.mktemp("auth") / "data", write_config=write)
    try:
        yield live
    finally:
        stop_live_server(live)


def click(server: LiveServer, slug: str) -> str:
    resp = requests.get(f"{server.url}/t/{slug}", allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    return parse_qs(urlsplit(resp.headers["Location"]).query)["click_id"][0]


def exchange(
    server: LiveServer, method: str, path: str, **kwargs: Any
) -> tuple[requests.Response, dict]:
    """One request and the one record it appended."""
    before = len(read_log(server.data_dir))
    resp = requests.request(method, f"{server.url}{path}", timeout=10, **kwargs)
    records = read_log(server.data_dir)
    assert len(records) == before + 1, records[before:]
    record = records[-1]
    assert record["http_status"] == resp.status_code
    if resp.status_code >= 400:
        assert record["error"] == resp.json()["error"]
    return resp, record


def test_forwarded_for_reaches_the_app_and_is_trusted_only_from_a_proxy(server: LiveServer) -> None:
    cid = click(server, "fenced-1")
    path = f"/api/postback?api_key=key-fenced&click_id={cid}"
    resp, record = exchange(
        server, "GET", path, headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.5"}
    )
    assert resp.json() == {"ok": True, "result": "recorded"}
    assert record["forwarded_for"] == "6.6.6.6, 203.0.113.5"  # waitress no longer strips it
    assert record["fields"]["client_ip"] == "203.0.113.5"
    resp, record = exchange(
        server, "GET", path + "&txn=2", headers={"X-Forwarded-For": "192.0.2.1"}
    )
    assert (resp.status_code, resp.json()["error"]) == (403, "ip_not_allowed")
    assert record["fields"]["client_ip"] == "192.0.2.1"
    resp, record = exchange(server, "GET", path + "&txn=3")
    assert (resp.status_code, record["fields"]["client_ip"]) == (403, "127.0.0.1")
    # Without trusted_proxies, loopback is just a client: its X-Forwarded-For is ignored.
    config_path = server.data_dir / "config.toml"
    try:
        rewrite_config(config_path, AUTH_CONFIG.split("\n", 1)[1])
        resp, record = exchange(
            server, "GET", path + "&txn=4", headers={"X-Forwarded-For": "203.0.113.5"}
        )
        assert (resp.status_code, resp.json()["error"]) == (403, "ip_not_allowed")
        assert record["fields"]["client_ip"] == "127.0.0.1"
    finally:
        rewrite_config(config_path, AUTH_CONFIG)


def test_signatures_over_the_wire(server: LiveServer) -> None:
    cid = click(server, "signer-1")
    query = f"api_key=key-signer&click_id={cid}&amount=7.25"
    ts = str(int(time.time()))
    good = {
        "X-Timestamp": ts,
        "X-Signature": sign(
            SIGNING_SECRET, signing_message(ts, "GET", "/api/postback", query, b"")
        ),
    }
    resp, record = exchange(server, "GET", f"/api/postback?{query}")
    assert (resp.status_code, resp.json()["error"]) == (401, "signature_required")
    assert record["fields"]["signature_present"] is False
    resp, record = exchange(
        server,
        "GET",
        f"/api/postback?{query}",
        headers={**good, "X-Signature": "sha256=" + "ab" * 32},
    )
    assert (resp.status_code, resp.json()["error"]) == (403, "invalid_signature")
    old = str(int(time.time()) - 3600)
    stale = {
        "X-Timestamp": old,
        "X-Signature": sign(
            SIGNING_SECRET, signing_message(old, "GET", "/api/postback", query, b"")
        ),
    }
    resp, record = exchange(server, "GET", f"/api/postback?{query}", headers=stale)
    assert (resp.status_code, resp.json()["error"]) == (403, "signature_expired")
    resp, record = exchange(server, "GET", f"/api/postback?{query}", headers=good)
    assert resp.json() == {"ok": True, "result": "recorded"}
    assert record["fields"]["signature_present"] is True and record["fields"]["amount"] == "7.25"
    body = b'{"api_key": "key-signer", "click_id": "%s", "txid": "j1"}' % cid.encode()
    headers = {
        "X-Timestamp": ts,
        "Content-Type": "application/json",
        "X-Signature": sign(SIGNING_SECRET, signing_message(ts, "POST", "/api/postback", "", body)),
    }
    resp, _ = exchange(server, "POST", "/api/postback", data=body, headers=headers)
    assert resp.json() == {"ok": True, "result": "recorded"}


def test_signature_covers_the_path_as_sent(server: LiveServer) -> None:
    """A percent-encoded path is signed as written, not decoded: /api/%70ostback."""
    cid = click(server, "signer-1")
    query = f"api_key=key-signer&click_id={cid}&txid=enc"
    ts = str(int(time.time()))
    host, port = urlsplit(server.url).netloc.split(":")
    for signed_path, expected in (("/api/postback", 403), ("/api/%70ostback", 200)):
        headers = {
            "X-Timestamp": ts,
            "X-Signature": sign(
                SIGNING_SECRET, signing_message(ts, "GET", signed_path, query, b"")
            ),
        }
        conn = http.client.HTTPConnection(host, int(port), timeout=10)  # requests would requote %70
        try:
            conn.request("GET", f"/api/%70ostback?{query}", headers=headers)
            status = conn.getresponse().status
        finally:
            conn.close()
        record = read_log(server.data_dir)[-1]
        assert (status, record["http_status"], record["route"]) == (
            expected,
            expected,
            "/api/postback",
        )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_readme_openssl_recipe_signs_like_the_receiver(server: LiveServer) -> None:
    cid = click(server, "signer-1")
    query = f"api_key=key-signer&click_id={cid}&txid=ossl"
    ts = str(int(time.time()))
    script = (
        'printf \'%s.GET./api/postback?%s.\' "$TS" "$QUERY" | '
        "openssl dgst -sha256 -hmac \"$SECRET\" -r | cut -d' ' -f1"
    )
    digest = subprocess.run(
        ["sh", "-c", script],
        env={"TS": ts, "QUERY": query, "SECRET": SIGNING_SECRET},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    readme = (REPO / "docs" / "endpoints.md").read_text(encoding="utf-8")
    assert f"SIG=$({script})" in readme  # the very command docs/endpoints.md shows
    resp, _ = exchange(
        server,
        "GET",
        f"/api/postback?{query}",
        headers={"X-Timestamp": ts, "X-Signature": f"sha256={digest}"},
    )
    assert resp.json() == {"ok": True, "result": "recorded"}


def test_rotated_key_is_refused_by_the_very_next_request(server: LiveServer) -> None:
    cid = click(server, "alpha-1")
    config_path = server.data_dir / "config.toml"
    resp, _ = exchange(server, "GET", f"/api/postback?api_key=key-alpha&click_id={cid}&txn=r1")
    assert resp.json()["result"] == "recorded"
    try:
        rewrite_config(
            config_path, AUTH_CONFIG.replace('api_key = "key-alpha"', 'api_key = "key-alpha-2"')
        )
        resp, record = exchange(
            server, "GET", f"/api/postback?api_key=key-alpha&click_id={cid}&txn=r2"
        )
        assert (resp.status_code, resp.json()["error"]) == (403, "invalid_api_key")
        assert record["fields"]["key_fingerprint"] and "key-alpha" not in str(record["fields"])
        resp, _ = exchange(
            server, "GET", f"/api/postback?api_key=key-alpha-2&click_id={cid}&txn=r3"
        )
        assert resp.json()["result"] == "recorded"
    finally:
        rewrite_config(config_path, AUTH_CONFIG)
    resp, _ = exchange(server, "GET", f"/api/postback?api_key=key-alpha-2&click_id={cid}&txn=r4")
    assert (resp.status_code, resp.json()["error"]) == (403, "invalid_api_key")
