"""The three marimo notebooks, on demo data: as scripts, as Jupyter notebooks, and in a browser.

The demo data is made once per module by `clickledger demo` at its default size, as `make
demo` makes it (a real receiver, simulated traffic, the pipeline and the credit job), in
TMP/data/demo, so that the browser test can open it as `data/demo` (what a user sees) from
TMP. Each notebook opens for every partner of the demo (`-- --partner NAME`) without an
error callout: in-process as a script, in Jupyter (the reconciliation notebook with the
partner set in its code, as a Jupyter user does), and in a browser. The browser test drives Debian's
headless Chromium with Playwright against `marimo run`, reads marimo's websocket messages
to know when every cell has run and whether one failed (an app hides failed cells), and
takes a full-page screenshot of each notebook into the test's tmp_path (NAME.png, or
NAME-failed.png when the page did not settle), named in a failure's message.

Set CLICKLEDGER_SAVE_SCREENSHOTS=1 to also copy the screenshot of each notebook that ran
cleanly to docs/screenshots/NAME.png, the pictures of the docs and the README:

    CLICKLEDGER_SAVE_SCREENSHOTS=1 .venv/bin/python -m pytest -q tests/notebooks/test_notebooks.py -k browser

Without it a test run leaves the git tree as it was.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest

from clickledger.cli import build_parser
from clickledger.demo import free_port
from pipeline.reconciliation import csv_safe_bytes, read_statement, sample_statement
from receiver.contract.config import key_digest, key_fingerprint
from tests.support.notebooks import run_notebook
from tests.support.paths import REPO

NOTEBOOKS = ("overview", "reconciliation", "troubleshooting")
DEMO = build_parser().parse_args(["demo"])  # `clickledger demo`'s defaults: the size of `make demo`
PARTNERS = ("acme", "clickwall", "moustache", "peerclick", "taskwall")  # the demo's, acme first (the default)
# A failed statement, an unreadable file, a pipeline that refused the log: a red callout.
DANGER = "data-kind='&quot;danger&quot;'"
DANGER_CALLOUT = "marimo-callout-output[data-kind*='danger']"  # the same, rendered in the page
TITLES = {"overview": "Overview", "reconciliation": "Reconciliation", "troubleshooting": "Troubleshooting"}
# a phrase of a cell output deep in each notebook, to know it ran to the end in Jupyter too
SHOWN_IN_JUPYTER = {"overview": "Top partners by issues", "reconciliation": "Download the outcome",
                    "troubleshooting": "Postbacks sent to a wrong URL"}
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO / "docs" / "screenshots"
SAVE_SCREENSHOTS = "CLICKLEDGER_SAVE_SCREENSHOTS"  # =1: a clean run replaces docs/screenshots/NAME.png
# marimo reports these on its error channel, but they are a notebook's explained empty states
NOT_ERRORS = {"ancestor-stopped", "interruption"}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("notebook-demo") / "data" / "demo"
    done = subprocess.run([sys.executable, "-m", "clickledger.cli", "demo", "--data", str(data)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert list((data / "warehouse" / "conversions").glob("click_day=*/part.parquet"))
    return data


def test_the_demo_has_the_partners_the_tests_open(demo_data: Path) -> None:
    import pipeline

    assert tuple(sorted(pipeline.load(demo_data).conversions["partner_id"].unique())) == PARTNERS


# ---------------------------------------------------------------- as plain scripts


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_runs_as_a_plain_script(name: str, demo_data: Path) -> None:
    done = subprocess.run([sys.executable, f"notebooks/{name}.py", "--", "--data", str(demo_data)],
                          capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.mark.parametrize("partner", PARTNERS)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_opens_for_every_partner_without_an_error(name: str, partner: str, demo_data: Path
                                                                ) -> None:
    """As `python notebooks/NAME.py -- --partner P` runs it, on `make demo`'s data: no red
    callout; the reconciliation notebook reconciles that partner's SAMPLE statement."""
    text, defs = run_notebook(name, demo_data, "--partner", partner)
    assert DANGER not in text, text[max(0, text.find(DANGER) - 1500):text.find(DANGER) + 100]
    if name == "reconciliation":
        result = defs["result"]
        assert defs["is_sample"] is True and result is not None and result.partner == partner
        assert defs["why"].height == (result.rows["outcome"] == "missing_ours").sum() > 0


def test_the_sample_statement_lists_each_key_once_for_every_partner_and_period(demo_data: Path) -> None:
    import pipeline

    wh = pipeline.load(demo_data)
    last = wh.conversions["converted_at"].max().date()
    for partner in PARTNERS:
        for seed in range(1, 16):
            start = None if seed == 1 else last - timedelta(days=seed % (DEMO.history_days + 1))
            statement = sample_statement(wh, partner, start=start, end=None if seed == 1 else last, seed=seed)
            keys = read_statement(statement).select("click_id", "transaction_id").rows()
            assert len(keys) == len(set(keys)), (partner, seed, start)
        pipeline.reconcile(wh, partner=partner, statement=statement)


def test_overview_key_outputs(demo_data: Path) -> None:
    _, defs = run_notebook("overview", demo_data)
    wh, daily = defs["wh"], defs["daily"]
    assert daily.height == DEMO.history_days + 1  # the days of history and today
    assert daily["clicks"].sum() == wh.clicks.height
    assert daily["conversions"].sum() == wh.conversions.filter(pl.col("counts")).height
    assert {"conversion_rate", "epc", "revenue", "payouts", "margin"} <= set(daily.columns)
    assert defs["breakdown"]["offer_id"].to_list() == sorted(wh.clicks["offer_id"].drop_nulls().unique())
    assert defs["funnel"]["status"].to_list() == ["approved", "pending", "rejected"]
    assert "BRL" in set(defs["mix"]["currency"])  # the demo's currency without a rate is shown...
    assert defs["missing"]["currency"].to_list() == ["BRL"]  # ... and called out
    assert defs["top_issues"]["issues"].sum() > 0


def test_reconciliation_on_the_sample_statement(demo_data: Path) -> None:
    text, defs = run_notebook("reconciliation", demo_data)
    assert defs["is_sample"] is True and "SAMPLE statement, not a partner" in text
    result = defs["result"]
    assert {"matched", "missing_ours", "missing_theirs", "amount_mismatch"} <= set(result.rows["outcome"])
    why = defs["why"]
    assert why.height == (result.rows["outcome"] == "missing_ours").sum()
    assert "never_received" in set(why["reason"])
    assert set(why["reason"]) - {"never_received"}, "some missing_ours rows are explained by postback_issues"
    csv = csv_safe_bytes(result.rows).decode()
    assert csv.splitlines()[0].startswith("click_id,transaction_id,outcome")


def test_reconciliation_of_a_partner_csv_with_its_own_column_names(demo_data: Path, tmp_path: Path) -> None:
    """A statement file named on the command line, headed the partner's way, with a formula in a cell."""
    import pipeline

    wh = pipeline.load(demo_data)
    ours = wh.conversions.filter(pl.col("partner_id") == "acme").sort("seq").tail(5)
    day = ours["converted_at"].max().date()
    lines = ["Click ID,Order ID,State,Payout,Currency Code,Day"]
    lines += [f"{r['click_id']},{r['transaction_id']},{r['status']},{r['amount']},{r['currency']},"
              f"{r['converted_at'].date()}" for r in ours.iter_rows(named=True)]
    lines.append(f'"=HYPERLINK(""http://evil.example"")",ord-x,approved,10.00,USD,{day}')
    statement = tmp_path / "acme-statement.csv"
    statement.write_text("\n".join(lines) + "\n", encoding="utf-8")

    text, defs = run_notebook("reconciliation", demo_data, "--partner", "acme", "--statement", str(statement))
    assert defs["is_sample"] is False and "SAMPLE statement, not" not in text
    mapping = defs["mapping_ui"].value
    assert mapping == {"click_id": "Click ID", "transaction_id": "Order ID", "status": "State",
                       "amount": "Payout", "currency": "Currency Code", "date": "Day"}
    rows = defs["result"].rows
    injected = rows.filter(pl.col("click_id").str.starts_with("="))
    assert injected["outcome"].to_list() == ["missing_ours"]
    assert set(rows.filter(pl.col("click_id").is_in(ours["click_id"].implode()))["outcome"]) <= {
        "matched"}
    csv = csv_safe_bytes(rows).decode()
    assert "\n'=HYPERLINK" in csv or ",'=HYPERLINK" in csv or "\"'=HYPERLINK" in csv
    assert "\n=HYPERLINK" not in csv and ",=HYPERLINK" not in csv and '"=HYPERLINK' not in csv


def test_a_loaded_statement_reconciles_its_own_dates(demo_data: Path, tmp_path: Path) -> None:
    """A partner's statement of a day before the default period (the last 7 days) is reconciled
    over its own dates; with the period picker instead, its rows are ours outside the period,
    and said so with their day, never `never_received`."""
    import pipeline

    wh = pipeline.load(demo_data)
    last = wh.conversions["converted_at"].max().date()
    day = last - timedelta(days=10)
    ours = wh.conversions.filter((pl.col("partner_id") == "acme") & (pl.col("converted_at").dt.date() == day)
                                 ).sort("seq").head(6)
    assert ours.height == 6
    lines = ["click_id,transaction_id,status,amount,currency,date"]
    lines += [f"{r['click_id']},{r['transaction_id']},{r['status']},{r['amount']},{r['currency']},{day}"
              for r in ours.iter_rows(named=True)]
    statement = tmp_path / "acme-old-day.csv"
    statement.write_text("\n".join(lines) + "\n", encoding="utf-8")

    text, defs = run_notebook("reconciliation", demo_data, "--partner", "acme", "--statement", str(statement))
    result = defs["result"]
    assert defs["statement_period"].value is True and DANGER not in text
    assert (result.start, result.end) == (day, day)
    assert set(result.rows.filter(pl.col("theirs_amount").is_not_null())["outcome"]) == {"matched"}

    text, defs = run_notebook("reconciliation", demo_data, "--partner", "acme", "--statement", str(statement),
                              defs={"statement_period": SimpleNamespace(value=False)})
    result, why = defs["result"], defs["why"]
    assert "but its day is outside the reconciled period" in text  # what the reason means
    assert (result.start, result.end) == (last - timedelta(days=6), last)
    assert why.height == 6 and set(why["reason"]) == {"outside_period"}
    assert all(f"is {day}, outside the reconciled period" in detail for detail in why["detail"])

    # the SAMPLE is made for the period picked, and reconciled over it
    _, defs = run_notebook("reconciliation", demo_data, "--partner", "acme")
    assert defs["statement_period"].value is False
    assert (defs["result"].start, defs["result"].end) == (last - timedelta(days=6), last)


def test_troubleshooting_key_outputs(demo_data: Path) -> None:
    text, defs = run_notebook("troubleshooting", demo_data)
    story, issues = defs["story"], defs["issues"]
    issues = issues.collect() if isinstance(issues, pl.LazyFrame) else issues  # scanned lazily (issue 13)
    # By default it opens the latest unknown click id that resembles one of ours.
    assert story.found and story.click.is_empty() and story.requests.height >= 1
    assert "We never issued this click id" in text and "The nearest one we did issue" in text
    assert defs["table"]["fix"].null_count() == 0, "every reason seen has a fix to tell the partner"
    assert defs["table"]["issues"].sum() == issues.height
    assert defs["by_reason"]["issues"].sum() == issues.height
    assert defs["nearest"].height >= 1 and defs["nearest"]["nearest_click_id"].null_count() == 0
    assert defs["wrong_path"].height == issues.filter(pl.col("reason") == "wrong_path").height >= 1


def test_troubleshooting_story_of_a_searched_click(demo_data: Path) -> None:
    import pipeline

    wh = pipeline.load(demo_data)
    earn = wh.conversions.filter(pl.col("click_id").is_in(
        wh.clicks.filter(pl.col("source") == "earn")["click_id"].implode())).sort("seq")["click_id"][0]
    text, defs = run_notebook("troubleshooting", demo_data, "--click", earn)
    story = defs["story"]
    assert story.click_id == earn and story.click.height == 1 and story.conversions.height >= 1
    kinds = story.requests["kind"].to_list()
    assert kinds[0] == "click" and "postback" in kinds
    assert "We never issued" not in text
    assert "survey_id" in text and "campaign_id" in text  # the conversion shows the campaign its survey id maps to (issue 14)


def test_overview_shows_deliveries_by_state(demo_data: Path) -> None:
    """Issue 14: the demo forwards to its publisher; the overview counts the deliveries by state."""
    text, defs = run_notebook("overview", demo_data)
    states = defs["delivery_states"]
    wh = defs["wh"]
    assert states["deliveries"].sum() == wh.deliveries.height > 0
    assert set(states["affiliate"]) == {"aff1", "aff2"} and "delivered" in set(states["state"])
    assert "Deliveries to publishers" in text


def test_troubleshooting_story_tells_what_we_told_the_publisher(demo_data: Path) -> None:
    import pipeline

    wh = pipeline.load(demo_data)
    told = wh.deliveries.filter(pl.col("affiliate") == "aff1").sort("step_seq")["click_id"][0]
    text, defs = run_notebook("troubleshooting", demo_data, "--click", told)
    story = defs["story"]
    assert story.deliveries.height >= 1 and story.attempts.height >= story.deliveries.height
    assert set(story.deliveries["state"]) == {"delivered"}
    assert "What we told the publisher" in text
    assert "demo-token-aff1-0001" not in text and "token=demo" in text  # its secret cut to 4 characters


def test_troubleshooting_shows_api_keys_cut(demo_data: Path) -> None:
    """The demo's publisher partner puts its key in the path, also when it gets the path wrong."""
    text, defs = run_notebook("troubleshooting", demo_data)
    # issue 15: the key's fingerprint in its place (it used to be its first 4 characters and "…")
    masked = f"/postbacks/[key:{key_fingerprint(key_digest('mlk_live_7f3a9c'))}]"
    assert defs["wrong_path"].height and masked in set(defs["wrong_path"]["path"])
    assert "mlk_live_7f3a9c" not in text and "sp_live_acme" not in text


# ---------------------------------------------------------------- empty states


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_without_a_warehouse_each_notebook_says_what_to_do(name: str, tmp_path: Path) -> None:
    text, defs = run_notebook(name, tmp_path / "nothing-here")
    assert "wh" not in defs or defs["wh"] is None
    assert "No warehouse in" in text and "make demo" in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_log_without_a_warehouse_offers_to_run_the_pipeline(name: str, demo_data: Path, tmp_path: Path
                                                              ) -> None:
    data = tmp_path / "fresh"
    data.mkdir()
    for item in ("config.toml", "fx_rates.csv"):
        shutil.copy(demo_data / item, data / item)
    shutil.copytree(demo_data / "log", data / "log")
    text, defs = run_notebook(name, data)
    assert "has a log" in text and "Run the pipeline over this log now" in text
    assert not (data / "warehouse").exists()

    # Pressing the button derives the warehouse (with a progress bar) and the notebook carries on.
    pressed = {"data_input": SimpleNamespace(value=str(data)), "run_button": SimpleNamespace(value=True)}
    _, defs = run_notebook(name, data, defs=pressed)
    assert list((data / "warehouse" / "conversions").glob("click_day=*/part.parquet"))
    import pipeline

    assert defs["wh"].conversions.height == pipeline.load(demo_data).conversions.height


def test_reconciliation_explains_an_unreadable_statement(demo_data: Path, tmp_path: Path) -> None:
    text, defs = run_notebook("reconciliation", demo_data, "--statement", str(tmp_path / "missing.csv"))
    assert "could not be read" in text and "no such file" in text
    assert defs.get("result") is None

    headless = tmp_path / "no-click-column.csv"
    headless.write_text("ref,value\na,1\n", encoding="utf-8")
    text, defs = run_notebook("reconciliation", demo_data, "--statement", str(headless))
    assert defs.get("result") is None
    assert "Column mapping: map click_id, status, currency" in text  # "value" was taken for the amount
    assert "cannot be reconciled" in text


# ---------------------------------------------------------------- Jupyter


def export_ipynb(name: str, target: Path) -> Path:
    export = subprocess.run([sys.executable, "-m", "marimo", "export", "ipynb", f"notebooks/{name}.py",
                             "-o", str(target), "-f"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert export.returncode == 0, export.stderr[-2000:]
    return target


def execute_in_jupyter(notebook: Path, data: Path) -> str:
    """Run `notebook` top to bottom in a Jupyter kernel; the JSON of its outputs (none an error)."""
    executed = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(notebook),
         "--output", f"{notebook.stem}.executed.ipynb", "--ExecutePreprocessor.timeout=180"],
        capture_output=True, text=True, timeout=300, cwd=notebook.parent,
        env={**os.environ, "CLICKLEDGER_DATA": str(data)})
    assert executed.returncode == 0, executed.stderr[-3000:]
    done = json.loads((notebook.parent / f"{notebook.stem}.executed.ipynb").read_text())
    outputs = [o for cell in done["cells"] for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return json.dumps(outputs)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_exports_to_ipynb_and_executes_in_jupyter(name: str, demo_data: Path,
                                                               tmp_path: Path) -> None:
    shown = execute_in_jupyter(export_ipynb(name, tmp_path / f"{name}.ipynb"), demo_data)
    assert SHOWN_IN_JUPYTER[name] in shown and "No warehouse" not in shown


@pytest.fixture(scope="module")
def reconciliation_ipynb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_ipynb("reconciliation", tmp_path_factory.mktemp("ipynb") / "reconciliation.ipynb")


@pytest.mark.parametrize("partner", PARTNERS)
def test_reconciliation_executes_in_jupyter_for_every_partner(partner: str, reconciliation_ipynb: Path,
                                                             demo_data: Path, tmp_path: Path) -> None:
    """Jupyter has no command line: the partner is changed in the code, as docs/notebooks.md says."""
    notebook = json.loads(reconciliation_ipynb.read_text())
    chosen = 0
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if 'cli_arg("partner")' in source:
            cell["source"] = source.replace('cli_arg("partner")', repr(partner))
            chosen += 1
    assert chosen == 1, "the cell that picks the partner"
    target = tmp_path / f"reconciliation-{partner}.ipynb"
    target.write_text(json.dumps(notebook), encoding="utf-8")
    shown = execute_in_jupyter(target, demo_data)
    assert SHOWN_IN_JUPYTER["reconciliation"] in shown and "cannot be reconciled" not in shown
    assert re.search(rf">{partner}, \d{{4}}-\d\d-\d\d to ", shown), "the heading of that partner's result"


def test_a_statement_with_nothing_missing_executes_in_jupyter(reconciliation_ipynb: Path, demo_data: Path,
                                                              tmp_path: Path) -> None:
    """Every statement row is ours: "nothing is missing" is an answer shown, not a stop that
    raises in Jupyter."""
    import pipeline

    ours = pipeline.load(demo_data).conversions.filter(pl.col("partner_id") == "acme")
    statement = tmp_path / "acme-statement.csv"
    ours.select("click_id", "transaction_id", "status", pl.col("amount").cast(pl.String), "currency",
                pl.col("converted_at").dt.date().alias("date")).write_csv(statement)
    notebook = json.loads(reconciliation_ipynb.read_text())
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        cell["source"] = (source.replace('cli_arg("partner")', repr("acme"))
                          .replace('cli_arg("statement")', repr(str(statement))))
    target = tmp_path / "reconciliation-matched.ipynb"
    target.write_text(json.dumps(notebook), encoding="utf-8")
    shown = execute_in_jupyter(target, demo_data)
    assert "Nothing is missing on our side" in shown and SHOWN_IN_JUPYTER["reconciliation"] in shown


# ---------------------------------------------------------------- in a browser


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (make install)"
    return None


def _messages(frames: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(op, data) of each of marimo's websocket messages."""
    for frame in frames:
        try:
            message = json.loads(frame)
        except ValueError:
            continue
        if isinstance(message, dict):
            yield message.get("op") or "", message.get("data") or {}


def _cell_errors(frames: list[str]) -> list[str]:
    """Errors marimo sent for any cell (an app does not display them, so the DOM cannot tell)."""
    errors = []
    for op, data in _messages(frames):
        if op == "kernel-startup-error":
            errors.append(f"kernel did not start: {json.dumps(data)[:500]}")
        output = data.get("output") if op == "cell-op" else None
        if output and output.get("channel") == "marimo-error":
            for item in output.get("data") or []:
                if item.get("type") not in NOT_ERRORS:
                    errors.append(f"cell {data.get('cell_id')}: {json.dumps(item)[:500]}")
    return errors


def _settled(frames: list[str]) -> bool:
    """A run has completed and no cell is queued or running."""
    status: dict[str, str] = {}
    completed = False
    for op, data in _messages(frames):
        if op == "completed-run":
            completed = True
        elif op == "cell-op" and data.get("status"):
            status[data["cell_id"]] = data["status"]
    return completed and not {"queued", "running"} & set(status.values())


def _wait_until_settled(page: Any, frames: list[str], server: subprocess.Popen, log: Path,
                        seconds: float = 90, quiet: float = 1.5) -> None:
    """Until marimo says the run is over and has sent nothing for `quiet` seconds (the page
    sets UI values after load, which may run cells again); at most `seconds`."""
    deadline = time.monotonic() + seconds
    seen, since = -1, time.monotonic()
    while True:
        if len(frames) != seen:
            seen, since = len(frames), time.monotonic()
        elif _settled(list(frames)) and time.monotonic() - since >= quiet:
            return
        assert time.monotonic() < deadline, f"marimo did not finish running within {seconds:.0f} s"
        assert server.poll() is None, log.read_text()[-3000:]
        page.wait_for_timeout(250)


@pytest.mark.server
@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
@pytest.mark.parametrize(("name", "partner"), [
    *((name, PARTNERS[0]) for name in NOTEBOOKS if name != "reconciliation"),
    *(("reconciliation", partner) for partner in PARTNERS)])
def test_each_notebook_renders_in_a_browser_without_errors(name: str, partner: str, demo_data: Path,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    log = tmp_path / "marimo.log"
    shot = tmp_path / f"{name}.png"
    home = demo_data.parent.parent  # so the notebook shows `data/demo`, as on a user's machine
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "marimo", "run", str(REPO / "notebooks" / f"{name}.py"), "--headless",
             "--host", "127.0.0.1", "--port", str(port), "--no-token", "--", "--data", "data/demo",
             "--partner", partner],
            stdout=out, stderr=subprocess.STDOUT, cwd=home)
    frames: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.on("websocket", lambda ws: ws.on(
                    "framereceived", lambda f: frames.append(f if isinstance(f, str) else f.decode())))
                deadline = time.monotonic() + 60
                while True:  # marimo needs a moment to listen
                    try:
                        page.goto(f"http://127.0.0.1:{port}/", wait_until="load", timeout=30000)
                        break
                    except Exception:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise
                        time.sleep(0.5)
                # marimo keeps a websocket open, so "network idle" never comes: wait for its own
                # word that the run completed with no cell queued or running.
                try:
                    _wait_until_settled(page, frames, server, log)
                    page.wait_for_selector(".output-area h1", timeout=30000)
                except Exception as error:  # what the page showed when it did not settle
                    failed = tmp_path / f"{name}-failed.png"
                    with contextlib.suppress(Exception):
                        page.screenshot(path=str(failed), full_page=True)
                    raise AssertionError(f"{error}\nscreenshot: {failed}") from error
                page.wait_for_timeout(1500)  # charts and tables draw after their data arrives
                text = page.inner_text("body")
                callouts = page.locator(DANGER_CALLOUT)  # a callout's text is in its shadow root
                danger = [callouts.nth(i).evaluate("e => (e.shadowRoot || e).textContent.trim().slice(0, 500)")
                          for i in range(min(callouts.count(), 5))]
                # An app scrolls inside its own container: size the window to the content (bounded),
                # so the screenshot holds the whole notebook.
                height = 0
                for _ in range(4):
                    wanted = min(page.evaluate(
                        "() => Math.max(document.documentElement.scrollHeight, ...Array.from("
                        "document.querySelectorAll('*')).filter(e => /(auto|scroll)/.test("
                        "getComputedStyle(e).overflowY)).map(e => e.scrollHeight))") + 40, 12000)
                    if wanted == height:
                        break
                    height = wanted
                    page.set_viewport_size({"width": 1280, "height": height})
                    page.wait_for_timeout(1000)
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    output = log.read_text()
    errors = _cell_errors(frames)  # in an app marimo sends "An internal error occurred"; its log has why
    seen = f"\nscreenshot: {shot}"
    assert not errors, "\n".join(errors) + "\n\nmarimo's log:\n" + output[-3000:] + seen
    assert "An internal error occurred" not in text, seen
    assert "Traceback" not in text and "Traceback" not in output, output[-3000:] + seen
    assert TITLES[name] in text and "No warehouse" not in text, seen
    assert not danger, f"{name} for {partner} opens on an error: {danger}{seen}"
    # the docs' pictures change only when asked: a plain test run must leave the git tree clean
    if partner == PARTNERS[0] and os.environ.get(SAVE_SCREENSHOTS, "").strip().lower() in ("1", "true", "yes"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # only a notebook that ran cleanly replaces its picture
        shutil.copyfile(shot, SCREENSHOTS / f"{name}.png")


def test_notebook_command_names_the_notebooks() -> None:
    done = subprocess.run([sys.executable, "-m", "clickledger.cli", "notebook", "no-such-notebook"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert "overview, reconciliation, troubleshooting" in done.stderr
    assert shutil.which("marimo", path=str(Path(sys.executable).parent))
