"""GET /metrics (issue 15): the counters move exactly as a known traffic mix is sent.

In process (a Falcon TestClient over the test network) for the counts of requests, 503s,
group commits, the log, the indexes and config reloads, and who may read /metrics; over a
real waitress server for the open connections, the slow connections closed and the
requests waitress refuses itself.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.app import Settings
from receiver.contract.framing import segment_paths
from receiver.log import SegmentWriter
from tests.support.harness import Harness
from tests.support.live_server import start_live_server, stop_live_server
from tests.support.network import TEST_CONFIG

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(harness: Harness, **kwargs: object) -> Samples:
    resp = harness.raw("GET", "/metrics", **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    return parse(resp.text)


def test_the_counters_move_as_a_known_traffic_mix_is_sent(harness: Harness) -> None:
    before = scrape(harness)
    records_before = len(harness.log.all())
    assert value(before, "clickledger_requests_total", route="/api/postback", status="200") == 0
    cid = harness.link_click("alpha-1")
    cid2 = harness.link_click("alpha-1")
    for n in range(3):
        assert harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid,
                                                    "transaction_id": f"t{n}"}).status == 200
    harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid, "transaction_id": "t0"})
    assert harness.get("/api/postback", params={"api_key": "wrong", "click_id": cid2}).status == 403
    assert harness.get("/no/such/path").status == 404
    assert harness.get("/healthz").status == 200
    after = scrape(harness)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("clickledger_requests_total", route="/t/{slug}", status="302") == 2
    assert moved("clickledger_requests_total", route="/api/postback", status="200") == 4  # 3 + a duplicate
    assert moved("clickledger_requests_total", route="/api/postback", status="403") == 1
    assert moved("clickledger_requests_total", route="unrouted", status="404") == 1
    assert moved("clickledger_requests_total", route="/healthz", status="200") == 1
    # the scrapes themselves are not traffic: not counted, not logged
    assert value(after, "clickledger_requests_total", route="/metrics", status="200") == 0
    records = harness.log.all()
    assert len(records) - records_before == 9
    assert not any(r["path"] == "/metrics" for r in records)
    # one group commit per record here (sent one after another): nine of one record each
    assert moved("clickledger_log_batch_records_count") == 9
    assert moved("clickledger_log_batch_records_sum") == 9
    assert moved("clickledger_log_fdatasync_seconds_count") == 9
    assert moved("clickledger_log_fdatasync_seconds_sum") > 0
    segments = segment_paths(harness.receiver.settings.log_dir)
    assert value(after, "clickledger_log_segments") == len(segments) == 1
    assert value(after, "clickledger_log_bytes") == sum(p.stat().st_size for p in segments)
    assert moved("clickledger_click_index_size") == 2
    assert moved("clickledger_conversion_index_size") == 3
    assert value(after, "clickledger_log_writable") == 1


def test_503s_are_counted_by_reason(make_harness: Callable[..., Harness], data_dir: Path) -> None:
    class Disk:
        broken = False

        def fsync(self, fd: int) -> None:
            if self.broken:
                raise OSError(errno.EIO, "injected fsync failure")

    disk = Disk()
    depth = [0]
    h = make_harness(data_dir, settings=Settings(data_dir, max_queue=2), queue_depth=lambda: depth[0],
                     writer=SegmentWriter(data_dir / "log", fsync=disk.fsync))
    cid = h.link_click("alpha-1")
    depth[0] = 3
    assert h.get("/api/postback", params={"api_key": "key-alpha", "click_id": cid}).status == 503
    samples = scrape(h)  # /metrics answers through an overload: it is never shed
    assert value(samples, "clickledger_worker_queue_depth") == 3
    depth[0] = 0
    disk.broken = True
    for _ in range(2):
        assert h.raw("GET", "/api/postback", params={"api_key": "key-alpha", "click_id": cid}).status_code == 503
    samples = scrape(h)
    assert value(samples, "clickledger_unavailable_responses_total", error="overloaded") == 1
    assert value(samples, "clickledger_unavailable_responses_total", error="log_unavailable") == 2
    assert value(samples, "clickledger_requests_total", route="/api/postback", status="503") == 3
    assert value(samples, "clickledger_log_writable") == 0


def test_config_reloads_and_refused_reloads_are_counted(harness: Harness) -> None:
    harness.rewrite_config(TEST_CONFIG.replace('homepage = "https://home.example/"',
                                               'homepage = "https://home2.example/"'))
    harness.get("/healthz")
    harness.rewrite_config(TEST_CONFIG + "\nnot toml [[\n")
    harness.get("/healthz")
    samples = scrape(harness)
    assert value(samples, "clickledger_config_reloads_total") == 1
    assert value(samples, "clickledger_config_refused_reloads_total") == 1
    assert value(samples, "clickledger_config_error") == 1


def test_metrics_answer_only_metrics_allowed_ips(harness: Harness) -> None:
    # by default this machine only
    assert harness.raw("GET", "/metrics", remote_addr="127.0.0.1").status_code == 200
    assert harness.raw("GET", "/metrics", remote_addr="::1").status_code == 200
    refused = harness.raw("GET", "/metrics", remote_addr="198.51.100.7")
    assert refused.status_code == 403
    assert refused.json["error"] == "ip_not_allowed"
    harness.rewrite_config(TEST_CONFIG.replace('public_url = "https://rx.example/"\n',
                                               'public_url = "https://rx.example/"\n'
                                               'trusted_proxies = ["10.0.0.1/32"]\n'
                                               'metrics_allowed_ips = ["198.51.100.0/24"]\n'))
    assert harness.raw("GET", "/metrics", remote_addr="198.51.100.7").status_code == 200
    assert harness.raw("GET", "/metrics", remote_addr="127.0.0.1").status_code == 403
    # through the trusted proxy, the real client's address decides; a forged header from elsewhere does not
    assert harness.raw("GET", "/metrics", remote_addr="10.0.0.1",
                       headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 200
    assert harness.raw("GET", "/metrics", remote_addr="10.0.0.1",
                       headers={"X-Forwarded-For": "203.0.113.5"}).status_code == 403
    assert harness.raw("GET", "/metrics", remote_addr="203.0.113.5",
                       headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 403
    samples = scrape(harness, remote_addr="198.51.100.7")
    assert value(samples, "clickledger_metrics_refused_total") == 4
    assert not any(r["path"] == "/metrics" for r in harness.log.all())  # refused ones are not traffic either


def test_metrics_allowed_ips_empty_means_nobody_and_bad_entries_are_refused(harness: Harness) -> None:
    from receiver.contract.config import ConfigError
    from receiver.contract.config_file import parse_config

    config = parse_config(TEST_CONFIG.replace('public_url = "https://rx.example/"\n',
                                              'public_url = "https://rx.example/"\nmetrics_allowed_ips = []\n'))
    assert not config.metrics_allowed("127.0.0.1", None)
    with pytest.raises(ConfigError, match="metrics_allowed_ips.*'localhost' is not an IP address"):
        parse_config(TEST_CONFIG.replace('public_url = "https://rx.example/"\n',
                                         'public_url = "https://rx.example/"\nmetrics_allowed_ips = ["localhost"]\n'))


def test_two_apps_in_one_process_keep_separate_metrics(make_harness: Callable[..., Harness], tmp_path: Path) -> None:
    apps = []
    for name in ("one", "two"):
        data = tmp_path / name
        data.mkdir()
        (data / "config.toml").write_text(TEST_CONFIG, encoding="utf-8")
        apps.append(make_harness(data))
    apps[0].get("/healthz")
    apps[0].get("/healthz")
    apps[1].get("/healthz")
    assert value(scrape(apps[0]), "clickledger_requests_total", route="/healthz", status="200") == 2
    assert value(scrape(apps[1]), "clickledger_requests_total", route="/healthz", status="200") == 1


@pytest.mark.server
def test_a_real_server_shows_its_connections_and_what_waitress_refused(tmp_path: Path) -> None:
    live = start_live_server(tmp_path / "data", threads=4)
    host, port = "127.0.0.1", int(live.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(5):
            idle.append(socket.create_connection((host, port), timeout=5))
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"GARBAGE\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.0 400")
        with socket.create_connection((host, port), timeout=5) as sock:
            with contextlib.suppress(OSError):  # the server may answer before reading it all
                sock.sendall(b"GET /postback?cid=" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n")
            assert sock.recv(4096).split(b" ", 2)[1] == b"431"
        time.sleep(0.2)
        samples = parse(requests.get(f"{live}/metrics", timeout=5).text)
        assert value(samples, "clickledger_open_connections") >= 6  # the idle ones and the scrape's
        assert value(samples, "clickledger_requests_total", route="http_error", status="400") == 1
        assert value(samples, "clickledger_requests_total", route="http_error", status="431") == 1
        assert value(samples, "clickledger_slow_connections_closed_total", reason="head_timeout") == 0
        for sock in idle:
            sock.close()
        idle.clear()
        time.sleep(0.3)
        samples = parse(requests.get(f"{live}/metrics", timeout=5).text)
        assert value(samples, "clickledger_open_connections") <= 2
    finally:
        for sock in idle:
            sock.close()
        stop_live_server(live)
