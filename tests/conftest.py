"""Fixtures used by the tests of several folders; the helpers behind them are in tests/support.

- `clock`, `click_ids`, `event_ids`: a fixed UTC clock and predictable ids for the app.
- `data_dir`: a DATA directory holding the test network (tests/support/network.py).
- `make_harness` / `harness`: a Falcon TestClient over `create_app` (tests/support/harness.py),
  whose `request()` asserts that every request appended exactly one log record matching its answer.
- `live_server`: a real `clickledger serve` (waitress) process on a free loopback port, over the
  demo network, shared by one test module (tests/support/live_server.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.app import Settings, create_app
from tests.support.clock import FixedClock
from tests.support.harness import Harness
from tests.support.ids import IdSequence
from tests.support.live_server import LiveServer, start_live_server, stop_live_server
from tests.support.network import TEST_CONFIG


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


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real waitress receiver over the demo network, shared by one test module."""
    data = tmp_path_factory.mktemp("live")
    server = start_live_server(data)
    try:
        yield server
    finally:
        stop_live_server(server)
