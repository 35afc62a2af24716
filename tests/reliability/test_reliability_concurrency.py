"""Reliability under concurrency, against a real waitress process with 64 threads.

- The same postback sent 50 times at once gives exactly one `recorded` and 49
  `duplicate`, and the log holds exactly one `recorded` record for the key, before
  every duplicate in seq order (each dialect that dedupes).
- 16 threads x 25 distinct postbacks: every one recorded, none lost, seq unique.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from receiver.contract.framing import BadLine, iter_log
from tests.support.live_server import LiveServer, start_live_server, stop_live_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server64(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path_factory.mktemp("concurrency") / "data", threads=64)
    try:
        yield server
    finally:
        stop_live_server(server)


def link_click(server: LiveServer, slug: str) -> str:
    resp = requests.get(f"{server}/t/{slug}", allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    return parse_qs(urlsplit(resp.headers["Location"]).query)["click_id"][0]


def earn_click(server: LiveServer) -> str:
    resp = requests.post(f"{server}/api/v1/earn/products/task-1/click",
                         headers={"Authorization": "Bearer user-token-1"}, json={}, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["clickId"]


# (dialect, how to make its click, how to send its postback)
DIALECTS = {
    "network": (lambda s: link_click(s, "acme-aff1"),
                lambda s, cid, txn: ("GET", "/api/postback",
                                     {"params": {"api_key": "sp_live_acme", "click_id": cid, "txn": txn,
                                                 "amount": "5"}})),
    "publisher": (lambda s: link_click(s, "moustache-aff1"),
                  lambda s, cid, txn: ("GET", "/postback/mlk_live_7f3a9c",
                                       {"params": {"click_id": cid, "conversion_id": "x",
                                                   "transaction_id": txn, "payout": "1"}})),
    "peerclick": (lambda s: link_click(s, "peer-aff3"),
                  lambda s, cid, txn: ("GET", "/postback", {"params": {"cid": cid, "txid": txn, "payout": "3"}})),
    "advertiser": (lambda s: link_click(s, "cw-aff2"),
                   lambda s, cid, txn: ("POST", "/postback/advertiser",
                                        {"params": {"campaign_id": "cw-1001", "click_id": cid},
                                         "data": {"transaction_id": txn, "payout": "2"}})),
    "earn": (earn_click,
             lambda s, cid, txn: ("POST", "/api/v1/earn/postback",
                                  {"params": {"click_id": cid},
                                   "json": {"amount": 1, "status": "completed", "transactionId": txn}})),
}


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_the_same_postback_50_times_at_once_is_recorded_once(server64: LiveServer, dialect: str) -> None:
    make_click, make_postback = DIALECTS[dialect]
    cid = make_click(server64)
    txn = f"RACE-{uuid.uuid4().hex[:8]}"
    method, path, kwargs = make_postback(server64, cid, txn)
    barrier = threading.Barrier(50)

    def send(_: int) -> tuple[int, str]:
        session = requests.Session()
        barrier.wait(timeout=30)
        resp = session.request(method, f"{server64}{path}", timeout=30, **kwargs)
        return resp.status_code, resp.json().get("result") or resp.json().get("error")

    with ThreadPoolExecutor(50) as pool:
        answers = Counter(pool.map(send, range(50)))
    assert answers == {(200, "recorded"): 1, (200, "duplicate"): 49}, answers

    records = [r for r in server64.records()
               if r["kind"] == "postback" and r["fields"].get("click_id") == cid
               and r["fields"].get("transaction_id") == txn]
    assert len(records) == 50
    assert Counter(r["result"] for r in records) == {"recorded": 1, "duplicate": 49}
    recorded = next(r for r in records if r["result"] == "recorded")
    assert recorded["fields"]["dialect"] == dialect
    assert all(r["seq"] > recorded["seq"] for r in records if r["result"] == "duplicate")
    assert len({r["seq"] for r in records}) == 50


def test_16_threads_x_25_distinct_postbacks_are_all_recorded(server64: LiveServer) -> None:
    clicks = [link_click(server64, "peer-aff3") for _ in range(8)]
    before = {r["seq"] for r in server64.records()}
    barrier = threading.Barrier(16)

    def worker(t: int) -> list[tuple[str, int, str]]:
        session = requests.Session()
        barrier.wait(timeout=30)
        out = []
        for i in range(25):
            nonce = f"t{t:02d}-{i:02d}-{uuid.uuid4().hex[:6]}"
            resp = session.get(f"{server64}/postback",
                               params={"cid": clicks[(t + i) % len(clicks)], "txid": nonce, "payout": "1",
                                       "nonce": nonce}, timeout=30)
            out.append((nonce, resp.status_code, resp.json().get("result")))
        return out

    with ThreadPoolExecutor(16) as pool:
        answers = [a for part in pool.map(worker, range(16)) for a in part]
    assert len(answers) == 400
    assert Counter((s, r) for _, s, r in answers) == {(200, "recorded"): 400}

    records = server64.records()
    fresh = [r for r in records if r["seq"] not in before]
    by_nonce: dict[str, list[dict[str, Any]]] = {}
    for r in fresh:
        if r["custom_data"].get("nonce"):
            by_nonce.setdefault(r["custom_data"]["nonce"], []).append(r)
    lost = [n for n, _, _ in answers if n not in by_nonce]
    assert lost == []
    assert all(len(v) == 1 and v[0]["result"] == "recorded" for v in by_nonce.values())
    seqs = [r["seq"] for r in records]
    assert len(seqs) == len(set(seqs))
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), "seq not increasing in file order"


def test_the_log_of_the_concurrency_server_is_intact(server64: LiveServer) -> None:
    bad: list[BadLine] = []
    records = list(iter_log(Path(server64.data_dir) / "log", on_bad=bad.append))
    assert bad == [] and records
