"""Guarantee 4, overload: beyond capacity the receiver sheds load with a logged 503, never
accepts then drops, and its memory stays bounded.

A real receiver with 2 worker threads and a queue bound of 4 is hit by 48 concurrent
clients; every request carries a nonce so the test can find its record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from clickledger.demo import free_port, stop_receiver, wait_healthy, write_demo_config
from receiver.contract.framing import iter_log

CLIENTS = 48
SECONDS = 3.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.server
def test_a_burst_beyond_capacity_is_shed_with_logged_503s(tmp_path: Path) -> None:
    write_demo_config(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # its own command line, not clickledger.demo.start_receiver: the point is a small --max-queue
    proc = subprocess.Popen(
        [sys.executable, "-m", "clickledger.cli", "serve", "--data", str(tmp_path), "--port", str(port),
         "--threads", "2", "--max-queue", "4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers: Counter[int] = Counter()
    answered: dict[str, int] = {}
    failures: list[str] = []
    lock = threading.Lock()
    peak_rss = 0.0
    try:
        wait_healthy(url, proc=proc)
        deadline = time.monotonic() + SECONDS

        def client() -> None:
            session = requests.Session()
            while time.monotonic() < deadline:
                nonce = uuid.uuid4().hex
                try:
                    r = session.get(f"{url}/postback", params={"cid": "no-such-click", "nonce": nonce},
                                    timeout=30)
                except requests.RequestException as exc:  # an accepted request that was dropped
                    with lock:
                        failures.append(repr(exc))
                    continue
                with lock:
                    answers[r.status_code] += 1
                    answered[nonce] = r.status_code
                if r.status_code == 503:
                    assert r.json()["error"] == "overloaded" and r.headers["Retry-After"] == "1"

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak_rss = max(peak_rss, _rss_mb(proc.pid))
            time.sleep(0.05)
        for t in threads:
            t.join(timeout=40)
    finally:
        stop_receiver(proc)
    print(f"\noverload: answers {dict(answers)}, dropped {len(failures)}, peak RSS {peak_rss:.0f} MB")
    assert failures == []  # never accepted then dropped
    assert set(answers) <= {404, 503}  # click_not_found, or shed
    assert answers[503] > 0, "48 clients on 2 threads should exceed a queue of 4"
    assert answers[404] > 0, "work below capacity still gets done"
    logged = {r["custom_data"].get("nonce"): r for r in iter_log(tmp_path / "log") if r["kind"] == "postback"}
    missing = [n for n in answered if n not in logged]
    assert missing == []  # every answer, shed ones too, is in the log
    assert all(logged[n]["http_status"] == status for n, status in answered.items())
    assert all(logged[n]["error"] == "overloaded" and logged[n]["route"] == "/postback"
               and logged[n]["fields"]["click_id"] == "no-such-click"
               for n, s in answered.items() if s == 503)
    assert peak_rss < 300


def test_no_shedding_below_the_bound(tmp_path: Path) -> None:
    import falcon.testing

    from receiver.app import Settings, create_app

    write_demo_config(tmp_path)
    depth = [0]
    app = create_app(Settings(tmp_path, max_queue=4), queue_depth=lambda: depth[0])
    client = falcon.testing.TestClient(app)
    try:
        assert client.simulate_get("/healthz").status_code == 200
        depth[0] = 5
        shed = client.simulate_get("/healthz")
        assert shed.status_code == 503 and shed.json["error"] == "overloaded"
        depth[0] = 4
        assert client.simulate_get("/healthz").status_code == 200
    finally:
        app.receiver.close()
    records = list(iter_log(tmp_path / "log"))
    assert [r["http_status"] for r in records] == [200, 503, 200]
    assert os.path.exists(tmp_path / "log")
