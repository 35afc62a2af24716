"""Shared fixtures for the receiver tests.

- `FixedClock`: a settable, advanceable UTC clock injected into `create_app`.
- `IdSequence`: predictable UUID-v4-shaped ids (`00000000-0000-4000-8000-000000000001`, ...).
- `data_dir` / `demo_data_dir`: a DATA directory with a small test config, or the demo network's.
- `harness` / `demo_harness` / `make_harness`: a Falcon TestClient over `create_app`, whose
  `request()` asserts that every request appended exactly one log record matching its answer.
- `live_server`: a real `python -m clickledger.cli serve` (waitress) process on a free loopback port.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import orjson
import pytest
import requests

from clickledger.demo import write_demo_config
from receiver.app import ReceiverApp, Settings, create_app
from receiver.contract.framing import iter_log

REPO = Path(__file__).resolve().parents[1]
START = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)

HASHED_KEY = "key-hashed"
HASHED_KEY_SHA256 = hashlib.sha256(HASHED_KEY.encode()).hexdigest()

# A small network; line numbers matter only to tests that build their own broken text.
TEST_CONFIG = f"""\
base_currency = "USD"
homepage = "https://home.example/"
public_url = "https://rx.example/"

[[partners]]
id = "alpha"
api_key = "key-alpha"

[[partners]]
id = "beta"
api_key = "key-beta"
postback_auth = "key"
status_updates = true

[[partners]]
id = "open"
postback_auth = "none"

[[partners]]
id = "hashed"
api_key_sha256 = "{HASHED_KEY_SHA256}"

[[offers]]
id = "alpha-shop"
partner = "alpha"
status = "active"
url = "https://shop.example/land?src=net&uid={{click_id}}&tid={{clickid}}"
currency = "eur"
revenue_share = {{ percent = 70 }}
click_ttl_hours = 2

[[offers]]
id = "alpha-paused"
partner = "alpha"
status = "paused"
url = "https://shop.example/paused"

[[offers]]
id = "alpha-pending"
partner = "alpha"
status = "pending"
url = "https://shop.example/pending"

[[offers]]
id = "beta-app"
partner = "beta"
url = "https://beta.example/app#top"
revenue_share = {{ fixed = 1.5 }}

[[offers]]
id = "open-offer"
partner = "open"
url = "https://open.example/go"
currency = "GBP"

[[offers]]
id = "camp-1"
partner = "open"
url = "https://game.example/signup"

[[offers]]
id = "hashed-offer"
partner = "hashed"
url = "https://hashed.example/"

[[offers]]
id = "earn-offer"
partner = "open"
url = "https://advertiser.example/offer"
currency = "USD"

[[links]]
slug = "alpha-1"
offer = "alpha-shop"
affiliate = "aff1"

[[links]]
slug = "alpha-paused-1"
offer = "alpha-paused"
affiliate = "aff1"

[[links]]
slug = "alpha-pending-1"
offer = "alpha-pending"
affiliate = "aff1"

[[links]]
slug = "beta-1"
offer = "beta-app"
affiliate = "aff2"

[[links]]
slug = "open-1"
offer = "open-offer"
affiliate = "aff3"

[[links]]
slug = "camp-a"
offer = "camp-1"
affiliate = "aff3"

[[links]]
slug = "hashed-1"
offer = "hashed-offer"
affiliate = "aff4"

[[products]]
id = "p1"
offer = "earn-offer"
task_url = "https://advertiser.example/offer"
click_ttl_hours = 1

[[products]]
id = "p2"
offer = "earn-offer"
task_url = "https://tasks.example/go/"

[[users]]
id = "u1"
token = "tok-1"

[[users]]
id = "u2"
token = "tok-2"
"""


# ---------------------------------------------------------------- clock and ids


class FixedClock:
    """A clock that stands still until told otherwise (always timezone-aware UTC)."""

    def __init__(self, start: datetime = START):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.now = moment.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self.now += delta if delta is not None else timedelta(**kwargs)
        return self.now


def uuid_like(n: int, prefix: str = "00000000") -> str:
    """A valid UUID v4 string (version 4, RFC 4122 variant) with a readable counter."""
    return f"{prefix}-0000-4000-8000-{n:012d}"


class IdSequence:
    """Predictable ids: uuid_like(1), uuid_like(2), ...; safe to call from many threads."""

    def __init__(self, prefix: str = "00000000"):
        self.prefix = prefix
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.issued: list[str] = []

    def __call__(self) -> str:
        with self._lock:
            value = uuid_like(next(self._counter), self.prefix)
            self.issued.append(value)
            return value

    def peek(self) -> str:
        """The id the next call will return."""
        with self._lock:
            return uuid_like(len(self.issued) + 1, self.prefix)


# ---------------------------------------------------------------- the log


def read_log(data_dir: Path) -> list[dict[str, Any]]:
    return list(iter_log(Path(data_dir) / "log"))


class LogReader:
    """Reads DATA/log; `new()` returns the records appended since the previous call."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.seen = len(self.all())

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    def all(self) -> list[dict[str, Any]]:
        return read_log(self.data_dir)

    def new(self) -> list[dict[str, Any]]:
        records = self.all()
        fresh, self.seen = records[self.seen:], len(records)
        return fresh

    def one_new(self) -> dict[str, Any]:
        fresh = self.new()
        assert len(fresh) == 1, f"expected exactly one new log record, got {len(fresh)}: {fresh}"
        return fresh[0]


# ---------------------------------------------------------------- app harness


class Exchange:
    """One request: the Falcon result and the one log record it produced."""

    def __init__(self, resp: falcon.testing.Result, record: dict[str, Any]):
        self.resp = resp
        self.record = record

    @property
    def status(self) -> int:
        return self.resp.status_code

    @property
    def json(self) -> Any:
        return self.resp.json

    @property
    def fields(self) -> dict[str, Any]:
        return self.record["fields"]

    @property
    def custom_data(self) -> dict[str, Any]:
        return self.record["custom_data"]


def check_record_matches(resp_status: int, body: Any, record: dict[str, Any], method: str, path: str) -> None:
    """A record must say what the answer said: status, result or error, method and path."""
    assert record["http_status"] == resp_status, record
    assert record["method"] == method
    assert record["path"] == path
    assert record["v"] == 1
    if isinstance(body, dict) and "ok" in body:
        if body["ok"]:
            assert record["result"] == body.get("result", record["result"])
            assert record["error"] is None
        else:
            assert record["error"] == body["error"], record
            assert record["result"] is None or record["result"] != "recorded"


class Harness:
    """A TestClient over one app, with its data dir, clock, ids and log."""

    def __init__(self, data_dir: Path, app: ReceiverApp, clock: FixedClock, click_ids: IdSequence,
                 event_ids: IdSequence):
        self.data_dir = data_dir
        self.app = app
        self.receiver = app.receiver
        self.client = falcon.testing.TestClient(app)
        self.clock = clock
        self.click_ids = click_ids
        self.event_ids = event_ids
        self.log = LogReader(data_dir)

    @property
    def config_path(self) -> Path:
        return self.data_dir / "config.toml"

    def close(self) -> None:
        if not self.receiver.writer.closed:
            self.receiver.close()

    def raw(self, method: str, path: str, **kwargs: Any) -> falcon.testing.Result:
        """A request without log assertions (for concurrency tests)."""
        return self.client.simulate_request(method, path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Exchange:
        """Send a request; assert it appended exactly one record that agrees with the answer."""
        resp = self.client.simulate_request(method, path, **kwargs)
        record = self.log.one_new()
        body = resp.json if resp.content and resp.headers.get("content-type", "").startswith(
            "application/json") else None
        check_record_matches(resp.status_code, body, record, method, path.split("?")[0].rstrip("/") or "/")
        return Exchange(resp, record)

    def get(self, path: str, **kwargs: Any) -> Exchange:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Exchange:
        return self.request("POST", path, **kwargs)

    # -- making clicks

    def link_click(self, slug: str, **params: str) -> str:
        ex = self.get(f"/t/{slug}", params=params or None)
        assert ex.status == 302, ex.resp.text
        assert ex.record["result"] == "click"
        return ex.fields["click_id"]

    def earn_click(self, product: str = "p1", token: str = "tok-1", body: Any = None) -> str:
        ex = self.post(f"/api/v1/earn/products/{product}/click",
                       headers={"Authorization": f"Bearer {token}"}, json=body if body is not None else {})
        assert ex.status == 201, ex.resp.text
        return ex.json["clickId"]

    def rewrite_config(self, text: str) -> None:
        rewrite_config(self.config_path, text)


def rewrite_config(path: Path, text: str) -> None:
    """Replace config.toml and make sure its mtime differs, whatever the filesystem's granularity."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    after = path.stat().st_mtime_ns
    if after == before:
        os.utime(path, ns=(after + 1_000_000, after + 1_000_000))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def click_ids() -> IdSequence:
    return IdSequence("00000000")


@pytest.fixture
def event_ids() -> IdSequence:
    return IdSequence("eeeeeeee")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(TEST_CONFIG, encoding="utf-8")
    return data


@pytest.fixture
def demo_data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "demo"
    write_demo_config(data, public_url="http://127.0.0.1:8080")
    return data


@pytest.fixture
def make_harness(clock: FixedClock, click_ids: IdSequence, event_ids: IdSequence
                 ) -> Iterator[Callable[..., Harness]]:
    """make_harness(data_dir, settings=None, **create_app_kwargs): apps are closed at teardown."""
    made: list[Harness] = []

    def make(data: Path, *, settings: Settings | None = None, **kwargs: Any) -> Harness:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("new_click_id", click_ids)
        kwargs.setdefault("new_event_id", event_ids)
        app = create_app(settings or Settings(Path(data)), **kwargs)
        harness = Harness(Path(data), app, clock, click_ids, event_ids)
        made.append(harness)
        return harness

    yield make
    for harness in reversed(made):
        harness.close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness], data_dir: Path) -> Harness:
    return make_harness(data_dir)


@pytest.fixture
def demo_harness(make_harness: Callable[..., Harness], demo_data_dir: Path) -> Harness:
    return make_harness(demo_data_dir)


def json_body(value: Any) -> bytes:
    return orjson.dumps(value)


# ---------------------------------------------------------------- a real waitress process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer(str):
    """The base URL of a running receiver (a str), with its data dir and process."""

    data_dir: Path
    proc: subprocess.Popen

    def __new__(cls, url: str, data_dir: Path, proc: subprocess.Popen) -> LiveServer:
        obj = super().__new__(cls, url)
        obj.data_dir = data_dir
        obj.proc = proc
        return obj

    @property
    def url(self) -> str:
        return str(self)

    def records(self) -> list[dict[str, Any]]:
        return read_log(self.data_dir)


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def start_live_server(data_dir: Path, write_config: Callable[[Path, str], None] | None = None,
                      threads: int = 8, attempts: int = 3) -> LiveServer:
    """Start `python -m clickledger.cli serve` on a free loopback port and wait for /healthz.

    `write_config(data_dir, base_url)` writes DATA/config.toml once the port is known
    (the demo config by default, with public_url pointing at this server). The server's
    stderr goes to a file next to DATA, never to an unread pipe that could fill up.
    """
    write_config = write_config or (lambda d, url: write_demo_config(d, public_url=url))
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}-server.stderr"
    for _ in range(attempts):  # another process may grab the free port first: try a new one
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        write_config(data_dir, url)
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "clickledger.cli", "serve", "--data", str(data_dir), "--port", str(port),
                 "--threads", str(threads)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if _wait_healthy(url, proc, timeout=20):
            return LiveServer(url, data_dir, proc)
        _stop(proc)
    raise RuntimeError(f"the receiver did not start: {stderr_path.read_text(errors='replace')[-2000:]}")


def stop_live_server(server: LiveServer) -> None:
    _stop(server.proc)
    assert server.proc.returncode is not None


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real waitress receiver over the demo network, shared by one test module."""
    data = tmp_path_factory.mktemp("live")
    server = start_live_server(data)
    try:
        yield server
    finally:
        stop_live_server(server)


@pytest.fixture
def client(harness: Harness) -> falcon.testing.TestClient:
    """A plain Falcon TestClient over the test network (its app is closed with `harness`)."""
    return harness.client
