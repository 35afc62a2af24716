"""The simulator against a real receiver: every dialect and mistake is sent, every answer is the
one its scenario expects, and the log holds exactly one record per request the summary counts."""

from __future__ import annotations

import argparse
import ast
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from waitress.server import create_server

import clickledger
from clickledger.demo import free_port, write_demo_config, write_fx_rates
from clickledger.simulator.clients import CLIENT_ADDRS, InProcessClient
from clickledger.simulator.history import simulate_history
from clickledger.simulator.offline import capture_day
from clickledger.simulator.plan import MACROS, SimulationError, load, plain_keys, plan_traffic
from clickledger.simulator.run import main, simulate
from clickledger.simulator.sending import Request, classify
from clickledger.simulator.steps import DIALECT_PATHS, DIALECTS, Step
from clickledger.simulator.summary import SimulationSummary
from receiver.app import create_app
from receiver.contract import params as contract_params
from receiver.contract.config_file import load_config
from receiver.contract.framing import iter_log

CLICKS = 60

POSTBACK_SCENARIOS = {
    dialect: {"conversion", "pending", "rejected", "no_fx_currency", "duplicate", "test",
              "wrong_key", "other_partner_key", "missing_click_id", "unknown_click", "macro",
              "wrong_path"}
    for dialect in ("network", "publisher", "peerclick", "advertiser", "earn")
}
POSTBACK_SCENARIOS["network"] |= {"missing_key"}
POSTBACK_SCENARIOS["publisher"] |= {"missing_key", "late"}
POSTBACK_SCENARIOS["peerclick"] |= {"late"}
POSTBACK_SCENARIOS["advertiser"] |= {"wrong_campaign", "missing_campaign"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A demo receiver on a free loopback port, in this process."""
    data = tmp_path_factory.mktemp("data")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    write_demo_config(data)
    write_fx_rates(data)
    app = create_app(data)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    url = f"http://127.0.0.1:{server.effective_port}"  # type: ignore[attr-defined]
    write_demo_config(data, public_url=url)  # re-read by the receiver on its next request
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield url, data
    finally:
        server.close()
        app.receiver.close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def run(served: tuple[str, Path]) -> tuple[SimulationSummary, list[dict]]:
    """One simulation, and the log records it added (other tests share the receiver)."""
    url, data = served
    before = sum(1 for _ in iter_log(data / "log"))
    summary = simulate(url, data, clicks=CLICKS, seed=3)
    return summary, list(iter_log(data / "log"))[before:]


def test_every_dialect_and_scenario_is_sent(run: tuple[SimulationSummary, list[dict]]) -> None:
    summary, _ = run
    sent = {(kind, dialect, scenario) for kind, dialect, scenario in summary.sent}
    for dialect, scenarios in POSTBACK_SCENARIOS.items():
        missing = {s for s in scenarios if ("postback", dialect, s) not in sent}
        assert not missing, f"{dialect}: {missing}"
    for click in ("link", "paused_offer", "unknown_slug"):
        assert ("click", "link", click) in sent
    for click in ("earn", "no_token", "bad_token", "bad_task_url"):
        assert ("click", "earn", click) in sent
    assert {("track", "earn", "track"), ("track", "earn", "unknown_click")} <= sent
    assert summary.not_sent == 0 and not summary.skipped
    assert summary.total_sent < 4 * CLICKS


def test_every_answer_is_the_expected_one(run: tuple[SimulationSummary, list[dict]]) -> None:
    summary, _ = run
    assert not summary.unexpected, summary.describe()
    for code in ("recorded", "duplicate", "test", "click_not_found", "invalid_api_key",
                 "api_key_required", "click_id_required", "campaign_mismatch", "not_found",
                 "offer_inactive", "click", "tracked"):
        assert summary.count(code) > 0, code
    assert "unexpected answers: none" in summary.describe()


def test_the_log_holds_one_record_per_request(run: tuple[SimulationSummary, list[dict]]) -> None:
    summary, records = run
    assert len(records) == summary.total_sent
    logged = Counter((r["http_status"], r["result"] or r["error"]) for r in records)
    assert logged == summary.answers
    assert sum(r["result"] == "recorded" for r in records) == summary.recorded


def test_the_traffic_is_as_messy_as_promised(run: tuple[SimulationSummary, list[dict]]) -> None:
    _, records = run
    postbacks = [r for r in records if r["kind"] in ("postback", "unrouted")]
    assert set(MACROS) <= {r["fields"].get("click_id") for r in postbacks}
    recorded = [r for r in postbacks if r["result"] == "recorded"]
    assert {"USD", "EUR", "GBP", "BRL"} <= {r["fields"]["currency"] for r in recorded}
    assert {r["method"] for r in recorded} == {"GET", "POST"}
    assert {r["content_type"] for r in recorded} >= {"application/json",
                                                     "application/x-www-form-urlencoded"}
    late = [r for r in postbacks if r["result"] == "duplicate" and r["fields"]["status_updates"]
            and r["fields"]["status"] == "approved"]
    assert late, "a pending conversion of a status_updates partner should be approved later"


def test_describe_is_a_table_of_counts(run: tuple[SimulationSummary, list[dict]]) -> None:
    summary, _ = run
    lines = summary.describe().splitlines()
    assert any(line.split() == ["200", "recorded", str(summary.recorded)] for line in lines)
    assert any(line.startswith("postback macro") for line in lines)
    assert "advertiser" in lines[2] and "total" in lines[2]
    assert summary.postback_url_elsewhere == 0  # the receiver re-read its public_url


def _demo_config(tmp_path: Path):
    path = write_demo_config(tmp_path)
    return load_config(path), plain_keys(path)


def test_the_same_seed_plans_the_same_requests(tmp_path: Path) -> None:
    config, keys = _demo_config(tmp_path)
    first = plan_traffic(config, keys, 200, seed=11)
    assert first == plan_traffic(config, keys, 200, seed=11)
    assert first != plan_traffic(config, keys, 200, seed=12)
    assert keys["moustache"] == "mlk_live_7f3a9c"


def test_a_smaller_config_plans_only_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[[partners]]\nid = "solo"\napi_key = "k_solo"\n\n'
        '[[offers]]\nid = "o1"\npartner = "solo"\nurl = "https://o.example/"\n\n'
        '[[links]]\nslug = "s1"\noffer = "o1"\naffiliate = "a1"\n',
        encoding="utf-8",
    )
    plan = plan_traffic(load_config(path), plain_keys(path), 40, seed=1)
    assert {s.dialect for s in plan if s.kind == "postback"} == {"network"}
    assert not any(s.kind == "track" or s.dialect == "earn" for s in plan)
    # the only partner's key is sent, so an unfilled macro is looked up and not found
    macro = next(s for s in plan if s.scenario == "macro")
    assert macro.expected == {"click_not_found"}
    assert not any(s.scenario == "other_partner_key" for s in plan)


def test_main_exits_2_without_config_or_receiver(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(url=f"http://127.0.0.1:{free_port()}", data=tmp_path, clicks=5, seed=1)
    assert main(args) == 2
    assert "config" in capsys.readouterr().err
    write_demo_config(tmp_path)
    assert main(args) == 2
    assert "unreachable" in capsys.readouterr().err
    with pytest.raises(SimulationError):
        simulate("ftp://example", tmp_path)


def test_the_time_limit_stops_sending_and_says_so(served: tuple[str, Path]) -> None:
    url, data = served
    before = sum(1 for _ in iter_log(data / "log"))
    summary = simulate(url, data, clicks=CLICKS, seed=5, time_limit=0.0)
    assert summary.total_sent == 1  # only the health check
    assert summary.stopped_early and summary.not_sent == summary.planned - 1
    assert "time limit" in summary.describe()
    assert sum(1 for _ in iter_log(data / "log")) == before + 1


def test_earn_postbacks_reach_the_receiver_even_when_public_url_names_another(
        served: tuple[str, Path]) -> None:
    """As in `clickledger demo`, whose config names the address `make serve` serves: the earn
    clicks' postback_url points elsewhere, the simulator still posts to the receiver it tests,
    and the summary says so plainly."""
    url, data = served
    before = sum(1 for _ in iter_log(data / "log"))
    write_demo_config(data, public_url="http://127.0.0.1:8080")
    try:
        summary = simulate(url, data, clicks=20, seed=11)
    finally:
        write_demo_config(data, public_url=url)
    assert summary.public_url == "http://127.0.0.1:8080" and summary.postback_url_elsewhere > 0
    assert not summary.unexpected, summary.describe()
    earn = [r for r in list(iter_log(data / "log"))[before:]
            if r["path"] == "/api/v1/earn/postback" and r["result"] == "recorded"]
    assert earn
    note = next(line for line in summary.describe().splitlines() if "postback_url on" in line)
    assert f"not on {url}" in note and "set it to the address they reach" in note
    summary.stand_in_for_public_url = True
    note = next(line for line in summary.describe().splitlines() if "postback_url on" in line)
    assert "as expected" in note and "make serve" in note


# ---------------------------------------------------------------- one plan, three ways to send it


CONTENT_TYPES = {"": None, "json": "application/json", "form": "application/x-www-form-urlencoded"}


def _planned(steps: Iterable[Step]) -> list[tuple[str, str | None, str]]:
    """What the log must show for these steps: one record a step, with the answer it expects."""
    return [(s.method, CONTENT_TYPES[s.body_format], next(iter(s.expected))) for s in steps]


def _logged(records: Iterable[dict]) -> list[tuple[str, str | None, str]]:
    return [(r["method"], r["content_type"], r["result"] or r["error"]) for r in records]


def test_the_online_simulator_sends_the_plan_of_its_seed(served: tuple[str, Path]) -> None:
    url, data = served
    before = sum(1 for _ in iter_log(data / "log"))
    summary = simulate(url, data, clicks=30, seed=21)
    config, keys = load(data)
    plan = plan_traffic(config, keys, 30, seed=21)
    records = list(iter_log(data / "log"))[before:]
    healthz = Counter([("GET", None, "ok")])
    assert Counter(_logged(records)) == Counter(_planned(plan)) + healthz
    assert summary.sent == Counter((s.kind, s.dialect, s.scenario) for s in plan) + Counter(
        [("health", "", "healthz")])
    assert Counter(_planned(plan)) != Counter(_planned(plan_traffic(config, keys, 30, seed=22)))


def test_the_history_sends_each_days_plan_in_process(tmp_path: Path) -> None:
    write_demo_config(tmp_path)
    write_fx_rates(tmp_path)
    [summary] = simulate_history(tmp_path, days=1, clicks_per_day=30, seed=4,
                                 end=datetime(2024, 3, 6, 15, tzinfo=UTC))
    config, keys = load(tmp_path)
    plan = plan_traffic(config, keys, summary.clicks, seed=4 * 1000 + 1)  # day 1 before the end
    records = list(iter_log(tmp_path / "log"))
    assert Counter(_logged(records)) == Counter(_planned(plan))
    assert not summary.unexpected, summary.describe()
    assert {r["received_at"][:10] for r in records} == {"2024-03-05"}
    assert {r["remote_addr"] for r in records} == set(CLIENT_ADDRS)


def test_the_offline_templates_are_the_plan_sent_in_order(tmp_path: Path) -> None:
    write_demo_config(tmp_path)
    records = [json.loads(line) for line in capture_day(tmp_path, clicks=30, seed=9, day=date(2024, 1, 1))]
    config, keys = load(tmp_path)
    assert _logged(records) == _planned(plan_traffic(config, keys, 30, seed=9))
    assert {r["received_at"][:10] for r in records} == {"2024-01-01"}
    assert {r["remote_addr"] for r in records} == set(CLIENT_ADDRS)


def test_dialect_paths_are_the_receivers_postback_routes(tmp_path: Path) -> None:
    assert {dialect: route for route, dialect in contract_params.DIALECTS.items()} == DIALECT_PATHS
    # the plan draws from its seeded generator dialect by dialect: this order is part of every plan
    assert DIALECTS == ("network", "publisher", "peerclick", "advertiser", "earn")
    write_demo_config(tmp_path)
    app = create_app(tmp_path)
    try:
        client = InProcessClient(app)

        def answer(path: str) -> str:
            return classify(*client.send(Request("POST", path, b"", {}), 1.0)[:3])

        for dialect, path in DIALECT_PATHS.items():
            assert answer(path.replace("{key}", "some-key")) != "not_found", dialect
        assert answer("/postback-nowhere") == "not_found"
    finally:
        app.receiver.close()


def test_no_clickledger_module_imports_a_private_name() -> None:
    """Each module keeps its private names: what another needs it makes public."""
    root = Path(clickledger.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                    node.module.split(".")[0] in ("clickledger", "receiver", "pipeline")):
                found += [f"{path.relative_to(root)}: from {node.module} import {a.name}"
                          for a in node.names if a.name.startswith("_")]
    assert not found
