"""The three marimo notebooks, on demo data: as scripts, as Jupyter notebooks, and in a browser.

The demo data is made once per session by `clickledger demo` (a real receiver, simulated
traffic, the pipeline and the credit job). The browser test drives Debian's headless
Chromium with Playwright against `marimo run`, and saves docs/screenshots/NAME.png.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from receiver.demo import free_port

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("overview", "reconciliation", "troubleshooting")
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("notebook-demo") / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "demo", "--data", str(data), "--clicks", "80",
         "--history-days", "6"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (data / "warehouse" / "conversions.parquet").exists()
    return data


def run_notebook(name: str, data: Path) -> dict:
    """Run a notebook in-process as marimo's script mode does; returns its definitions."""
    spec = importlib.util.spec_from_file_location(f"notebook_{name}", ROOT / "notebooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    old = os.environ.get("CLICKLEDGER_DATA")
    os.environ["CLICKLEDGER_DATA"] = str(data)
    try:
        _, defs = module.app.run()
    finally:
        if old is None:
            os.environ.pop("CLICKLEDGER_DATA", None)
        else:
            os.environ["CLICKLEDGER_DATA"] = old
    return dict(defs)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_runs_as_a_plain_script(name: str, demo_data: Path) -> None:
    done = subprocess.run([sys.executable, f"notebooks/{name}.py", "--", "--data", str(demo_data)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_overview_key_outputs(demo_data: Path) -> None:
    defs = run_notebook("overview", demo_data)
    daily = defs["daily"]
    assert daily.height == 7  # six days of history and today
    assert daily["clicks"].sum() == defs["wh"].clicks.height
    assert set(defs["funnel"]["status"]) <= {"approved", "pending", "rejected"}
    assert "BRL" in set(defs["mix"]["currency"])  # the demo's currency without a rate is shown
    assert defs["missing"].height == 1  # ... and called out


def test_reconciliation_key_outputs(demo_data: Path) -> None:
    defs = run_notebook("reconciliation", demo_data)
    result = defs["result"]
    assert {"matched", "missing_ours", "missing_theirs"} <= set(result.rows["outcome"])
    why = defs["why"]
    assert why.height == (result.rows["outcome"] == "missing_ours").sum()
    assert "never_received" in set(why["reason"])
    csv = defs["spreadsheet_safe"](result.rows).decode()
    assert csv.splitlines()[0].startswith("click_id,transaction_id,outcome")


def test_troubleshooting_key_outputs(demo_data: Path) -> None:
    defs = run_notebook("troubleshooting", demo_data)
    story = defs["story"]
    assert story.found and story.requests.height >= 1
    assert set(defs["table"]["fix"].drop_nulls()) and defs["table"]["fix"].null_count() == 0


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_exports_to_ipynb_and_executes_in_jupyter(name: str, demo_data: Path,
                                                               tmp_path: Path) -> None:
    target = tmp_path / f"{name}.ipynb"
    export = subprocess.run([sys.executable, "-m", "marimo", "export", "ipynb", f"notebooks/{name}.py",
                             "-o", str(target), "-f"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert export.returncode == 0, export.stderr[-2000:]
    executed = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(target),
         "--output", f"{name}.executed.ipynb", "--ExecutePreprocessor.timeout=180"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "CLICKLEDGER_DATA": str(demo_data)})
    assert executed.returncode == 0, executed.stderr[-3000:]
    assert (tmp_path / f"{name}.executed.ipynb").exists()


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (make install)"
    return None


@pytest.mark.server
@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_renders_in_a_browser_without_errors(name: str, demo_data: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    log = tmp_path / "marimo.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "marimo", "run", f"notebooks/{name}.py", "--headless", "--host", "127.0.0.1",
             "--port", str(port), "--no-token", "--", "--data", str(demo_data)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 2400})
                deadline = time.monotonic() + 60
                while True:  # marimo needs a moment to listen
                    try:
                        page.goto(f"http://127.0.0.1:{port}/", wait_until="load", timeout=30000)
                        break
                    except Exception:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise
                        time.sleep(0.5)
                # marimo keeps a websocket open, so "network idle" never comes: wait for the
                # notebook's title in a rendered cell, then let charts and tables finish drawing.
                page.wait_for_selector(".output-area h1", timeout=60000)
                page.wait_for_timeout(4000)
                text = page.inner_text("body")
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
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
    assert "An internal error occurred" not in text
    assert "Traceback" not in text and "Traceback" not in output, output[-3000:]
    assert page_has_content(text, name)


def page_has_content(text: str, name: str) -> bool:
    title = {"overview": "Overview", "reconciliation": "Reconciliation", "troubleshooting": "Troubleshooting"}[name]
    return title in text and "No warehouse" not in text


def test_notebook_command_names_the_notebooks() -> None:
    done = subprocess.run([sys.executable, "-m", "receiver.cli", "notebook", "no-such-notebook"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "overview, reconciliation, troubleshooting" in done.stderr
    assert shutil.which("marimo", path=str(Path(sys.executable).parent))
