"""Reliability: a real receiver whose log disk fills up, then frees space again.

DATA/log is a 512 KiB tmpfs (the config lives elsewhere). Postbacks are sent until
space runs out. From the first 503 on, no 2xx may be answered for a record that is not
on disk, /healthz answers 503, and once space is freed (a filler file in the same tmpfs
is deleted) the same process recovers without a restart.

Needs root (or CAP_SYS_ADMIN) to mount; skipped otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from receiver.contract.framing import BadLine, iter_log, segment_paths
from tests.support.live_server import start_live_server, stop_live_server

pytestmark = pytest.mark.server

TMPFS_SIZE = "512k"
FILLER_BYTES = 160 * 1024
PAD = "p" * 3000  # a fat postback (its query is kept twice: raw and in custom_data)


@pytest.fixture
def small_log_disk(tmp_path: Path):
    """DATA with DATA/log a small tmpfs, always unmounted afterwards."""
    if not shutil.which("mount") or not shutil.which("umount"):
        pytest.skip("mount/umount not available")
    data = tmp_path / "data"
    log_dir = data / "log"
    log_dir.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(log_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        filler = log_dir / "filler.bin"  # not a segment: readers ignore it; deleting it frees space
        filler.write_bytes(b"\0" * FILLER_BYTES)
        yield data, filler
    finally:
        done = subprocess.run(["umount", str(log_dir)], capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(log_dir)], capture_output=True)


def test_disk_full_answers_503_never_an_unlogged_2xx_and_recovers_without_restart(small_log_disk) -> None:
    data, filler = small_log_disk
    server = start_live_server(data)
    try:
        run_disk_full(server, filler)
    finally:
        stop_live_server(server)
    bad: list[BadLine] = []
    records = list(iter_log(data / "log", on_bad=bad.append))
    # torn bytes of a failed write are cut back; were a cut to fail, only a segment's last line
    for b in bad:
        assert b.torn and b.segment.read_bytes().find(b"\n", b.offset) == -1, b
    seqs = [r["seq"] for r in records]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False))


def run_disk_full(server: Any, filler: Path) -> None:
    session = requests.Session()
    click = session.get(f"{server}/t/peer-aff3", allow_redirects=False, timeout=10)
    assert click.status_code == 302
    cid = parse_qs(urlsplit(click.headers["Location"]).query)["click_id"][0]
    answers: list[tuple[str, str, int, Any]] = []  # (phase, nonce, status, body)

    def postback(phase: str) -> int:
        nonce = uuid.uuid4().hex
        resp = session.get(f"{server}/postback", params={"cid": cid, "txid": nonce, "nonce": nonce, "pad": PAD},
                           timeout=10)
        answers.append((phase, nonce, resp.status_code, resp.json()))
        return resp.status_code

    # fill the disk: bounded in count and time
    deadline = time.monotonic() + 30
    first_503 = None
    for i in range(2000):
        assert time.monotonic() < deadline, "the disk never filled up"
        status = postback("filling")
        if status == 503:
            first_503 = i
            break
        assert status == 200
    assert first_503 is not None and first_503 > 5
    assert answers[-1][3] == {"ok": False, "error": "log_unavailable"}

    # while (nearly) full: a small record may still fit in the space a failed write gave
    # back, and is then rightly answered 200; once nothing fits, /healthz turns 503 too
    health_503 = 0
    for _ in range(200):
        postback("full")
        health = session.get(f"{server}/healthz", timeout=10)
        answers.append(("full", "", health.status_code, health.json()))
        if health.status_code == 503:
            assert health.json()["error"] == "log_unavailable"
            health_503 += 1
            if health_503 >= 5:
                break
    assert health_503 >= 5, "/healthz never turned 503 while the disk was full"
    full = [status for phase, _, status, _ in answers if phase == "full"]
    two_xx_after_first_503 = sum(200 <= s < 300 for s in full)
    assert full[-2:] == [503, 503]

    # free space: the same process recovers on the next requests
    filler.unlink()
    for _ in range(10):
        assert postback("recovered") == 200
    health = session.get(f"{server}/healthz", timeout=10)
    assert health.status_code == 200, health.text

    # the log: every 2xx answer's record is on disk; no 503 answer has a success record
    logged: dict[str, dict[str, Any]] = {}
    for record in server.records():
        nonce = record["custom_data"].get("nonce")
        if nonce:
            assert nonce not in logged, "a request was logged twice"
            logged[nonce] = record
    unlogged_2xx = [n for _, n, s, _ in answers if n and 200 <= s < 300 and n not in logged]
    for _, nonce, status, body in answers:
        if nonce and nonce in logged:
            assert logged[nonce]["http_status"] == status
            if status == 200:
                assert logged[nonce]["result"] == body["result"] == "recorded"
    recovered = [n for phase, n, _, _ in answers if phase == "recovered"]
    assert all(logged[n]["result"] == "recorded" for n in recovered)
    segments = segment_paths(server.data_dir / "log")
    print(f"\n[disk full] first 503 after {first_503} postbacks; then {len(full)} requests while full, "
          f"{two_xx_after_first_503} of them 2xx (their records fitted); 2xx answered for unlogged records = {len(unlogged_2xx)}; "
          f"{len(segments)} segment files; recovered without restart: yes")
    assert unlogged_2xx == []
    assert server.proc.poll() is None  # no restart happened
