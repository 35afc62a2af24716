"""The Falcon harness: a TestClient over `create_app` whose `request()` asserts that every
request appended exactly one log record agreeing with its answer (status, result or error,
method and path). The `make_harness` and `harness` fixtures of tests/conftest.py make them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon.testing

from receiver.app import ReceiverApp
from receiver.contract.framing import iter_log
from tests.support.clock import FixedClock
from tests.support.ids import IdSequence
from tests.support.network import rewrite_config


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
