"""`make demo` / `clickledger demo`: a demo network covering all five seed systems, served and simulated.

The demo config has one partner per seed document:
- acme (seed 003, partner tracking links): api_key, status final at first insert
- moustache (seed 001, publisher network): key in the postback path, status updates allowed
- peerclick (seed 002, PeerClick S2S): public postbacks, EUR offers
- clickwall (seed 004, ClickWall advertiser postback): public, campaign_id checked, GBP
- taskwall (seed 000, earn app): public earn postbacks for the app's task products
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO

from receiver.contract.config import Config
from receiver.contract.config_file import parse_config
from receiver.contract.datadir import DataDir

DEMO_CONFIG = """\
# clickledger demo network: one partner per seed system (see docs/configuration.md).
base_currency = "USD"
homepage = "https://network.example/"
public_url = "{public_url}"

[[partners]]                      # seed 003: tracking links, api_key, status final at first insert
id = "acme"
api_key = "sp_live_acme"
postback_auth = "key"
status_updates = false

[[partners]]                      # seed 001: publisher network, key in the postback path
id = "moustache"
api_key = "mlk_live_7f3a9c"
status_updates = true

[[partners]]                      # seed 002: PeerClick tracker, public postbacks
id = "peerclick"
postback_auth = "none"
status_updates = true

[[partners]]                      # seed 004: ClickWall advertiser postback, campaign_id checked
id = "clickwall"
api_key = "cw_adv_51d2"
postback_auth = "none"

[[partners]]                      # seed 000: earn-app advertiser, public postback_url
id = "taskwall"
postback_auth = "none"
status_updates = true             # chargebacks reverse a wallet credit (a debit)

[[offers]]
id = "acme-shop"
partner = "acme"
status = "active"
url = "https://shop.example/land?src=net"
currency = "USD"
revenue_share = {{ percent = 70 }}
click_ttl_hours = 720

[[offers]]
id = "acme-winter"
partner = "acme"
status = "paused"
url = "https://shop.example/winter"
currency = "USD"
revenue_share = {{ percent = 70 }}

[[offers]]
id = "moustache-survey"
partner = "moustache"
status = "active"
url = "https://surveys.example/start?uid={{click_id}}"
currency = "USD"
revenue_share = {{ fixed = 1.5 }}

[[offers]]
id = "peer-app"
partner = "peerclick"
status = "active"
url = "https://apps.example/install?clickid={{clickid}}"
currency = "EUR"
revenue_share = {{ percent = 60 }}
click_ttl_hours = 168

[[offers]]
id = "cw-1001"
partner = "clickwall"
status = "active"
url = "https://game.example/signup"
currency = "GBP"
revenue_share = {{ percent = 50 }}

[[offers]]
id = "taskwall-tasks"
partner = "taskwall"
status = "active"
url = "https://advertiser.example/offer"
currency = "USD"
revenue_share = {{ percent = 50 }}

[[links]]
slug = "acme-aff1"
offer = "acme-shop"
affiliate = "aff1"

[[links]]
slug = "acme-aff2"
offer = "acme-shop"
affiliate = "aff2"

[[links]]
slug = "acme-winter-aff1"
offer = "acme-winter"
affiliate = "aff1"

[[links]]
slug = "moustache-aff1"
offer = "moustache-survey"
affiliate = "aff1"

[[links]]
slug = "peer-aff3"
offer = "peer-app"
affiliate = "aff3"

[[links]]
slug = "cw-aff2"
offer = "cw-1001"
affiliate = "aff2"

[[products]]
id = "task-1"
offer = "taskwall-tasks"
task_url = "https://advertiser.example/offer"
click_ttl_hours = 24

[[products]]
id = "task-2"
offer = "taskwall-tasks"
task_url = "https://advertiser.example/survey"
click_ttl_hours = 24

[[users]]
id = "u1"
token = "user-token-1"

[[users]]
id = "u2"
token = "user-token-2"

[[users]]
id = "u3"
token = "user-token-3"
"""

FX_RATES = {"USD": "1", "EUR": "1.0842", "GBP": "1.2719"}


def write_demo_config(data_dir: Path, public_url: str = "http://127.0.0.1:8080") -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = DataDir(data_dir).config_path
    path.write_text(DEMO_CONFIG.format(public_url=public_url), encoding="utf-8")
    return path


def write_fx_rates(data_dir: Path, today: date | None = None, days: int = 30) -> Path:
    """DATA/fx_rates.csv: date,currency,rate (units of USD for one unit of currency).

    Rates drift a little from day to day (deterministically), so the rate-of-the-day
    rule shows in the demo; weekends have no rates, as with central-bank fixings, so the
    latest-earlier-rate rule shows too.
    """
    today = today or datetime.now(UTC).date()
    lines = ["date,currency,rate"]
    for back in range(days, -1, -1):
        day = today - timedelta(days=back)
        if day.weekday() >= 5:
            continue
        drift = Decimal(str(round(math.sin(day.toordinal() / 3) / 100, 4)))
        for cur, rate in FX_RATES.items():
            value = Decimal(rate) if cur == "USD" else (Decimal(rate) * (1 + drift)).quantize(Decimal("0.0001"))
            lines.append(f"{day.isoformat()},{cur},{value}")
    path = DataDir(data_dir).fx_rates_path
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


DEMO_MARKER = DataDir.DEMO_MARKER_FILE


def mark_demo_dir(data_dir: Path) -> None:
    """Mark `data_dir` as the demo's own, so a later `clickledger demo` may replace its data."""
    DataDir(data_dir).demo_marker_path.write_text(
        "This directory holds the clickledger demo network. `clickledger demo` deletes its log/,\n"
        "index/, warehouse/ and ledger/ and rewrites config.toml and fx_rates.csv on each run.\n"
        "Delete this file to keep `clickledger demo` from doing so without --force.\n",
        encoding="utf-8")


def holds_unedited_demo_config(data_dir: Path) -> bool:
    """Whether DATA/config.toml is exactly what a demo writes (with any public_url): a demo
    directory made before the marker existed, which a demo run may take over."""
    try:
        text = DataDir(data_dir).config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    # the first line is a comment whose wording has changed between versions
    text = text.partition("\n")[2]
    head, _, tail = DEMO_CONFIG.format(public_url="\x00").partition("\n")[2].partition("\x00")
    middle = text[len(head):len(text) - len(tail)]
    return (len(text) > len(head) + len(tail) and text.startswith(head) and text.endswith(tail)
            and "\n" not in middle and '"' not in middle)


def demo_dir_refusal(data_dir: Path) -> str | None:
    """Why `clickledger demo` must not take over `data_dir` without --force, or None when it may:
    a new or empty directory, or one with the demo's marker."""
    if not data_dir.exists() or (data_dir.is_dir() and DataDir(data_dir).demo_marker_path.is_file()):
        return None
    if holds_unedited_demo_config(data_dir):
        return None  # made by a demo of a version before the marker
    if not data_dir.is_dir():
        return f"{data_dir} is not a directory"
    entries = sorted(data_dir.iterdir())
    if not entries:
        return None
    shown = ", ".join(e.name + ("/" if e.is_dir() else "") for e in entries[:8])
    if len(entries) > 8:
        shown += f" and {len(entries) - 8} more"
    return (f"{data_dir} was not created by `clickledger demo` (no {DEMO_MARKER} in it) and holds "
            f"{shown}. A demo run deletes its {', '.join(g + '/' for g in DataDir.GENERATED_DIRS)} and rewrites "
            f"config.toml and fx_rates.csv: choose a new or empty --data directory, or pass --force "
            f"to replace them.")


def remove_generated(data_dir: Path) -> list[str]:
    """Delete the demo's generated directories in `data_dir`; one line per removed path."""
    removed = []
    for path in DataDir(data_dir).generated_paths:
        if not path.exists():
            continue
        if path.is_dir() and not path.is_symlink():
            files = sum(1 for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path)
            removed.append(f"removed {path}/ ({files} file{'' if files == 1 else 's'})")
        else:
            path.unlink()
            removed.append(f"removed {path}")
    return removed


def published_credentials(config: Config) -> list[str]:
    """The partner api keys and user tokens of `config` that are the demo network's: published
    in the README, so anyone can post conversions with them to a server that accepts them."""
    demo = parse_config(DEMO_CONFIG.format(public_url="http://127.0.0.1:8080"))
    demo_digests = {p.api_key_sha256 for p in demo.partners.values() if p.api_key_sha256}
    demo_tokens = {u.token for u in demo.users.values()}
    found = [f"partner {p.id!r} api key" for p in config.partners.values()
             if p.api_key_sha256 in demo_digests]
    found += [f"user {u.id!r} token" for u in config.users.values() if u.token in demo_tokens]
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the receiver exited with code {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the receiver at {url} did not become healthy within {timeout:.0f} s")


def start_receiver(data_dir: Path, port: int, threads: int = 16, *,
                   stderr: int | IO[bytes] | None = None) -> subprocess.Popen:
    """`clickledger serve` over `data_dir` on a loopback `port`, in a child process; its stderr
    goes where this process's goes, or to `stderr` (a file, or subprocess.DEVNULL)."""
    return subprocess.Popen(
        [sys.executable, "-m", "clickledger.cli", "serve", "--data", str(data_dir), "--port", str(port),
         "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop_receiver(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(data_dir: Path, *, port: int = 0, clicks: int = 250, seed: int = 7, history_days: int = 13,
             force: bool = False) -> int:
    """A fresh demo: config, two weeks of history, today's traffic over HTTP, then the pipeline.

    Refuses (2) a directory the demo did not make (see `demo_dir_refusal`) unless `force`,
    and prints each path it removes.
    """
    from clickledger.simulator.history import simulate_history
    from clickledger.simulator.run import simulate

    data_dir = Path(data_dir)
    refusal = demo_dir_refusal(data_dir)
    not_a_dir = data_dir.exists() and not data_dir.is_dir()
    if refusal and (not force or not_a_dir):
        print(f"clickledger demo: {refusal}", file=sys.stderr)
        return 2
    try:
        for line in remove_generated(data_dir):
            print(line, flush=True)
    except OSError as exc:
        print(f"clickledger demo: cannot remove the previous demo data: {exc}", file=sys.stderr)
        return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    mark_demo_dir(data_dir)
    # The config names the address `make serve` serves (never this run's temporary port), so
    # earn clicks made later by `make serve` hand out a postback_url that answers.
    write_demo_config(data_dir)
    write_fx_rates(data_dir)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    if history_days:
        past = simulate_history(data_dir, days=history_days, clicks_per_day=clicks, seed=seed)
        print(f"history: {history_days} days before today, {sum(p.total_sent for p in past)} requests "
              f"through the receiver in-process with a simulated clock "
              f"({sum(p.recorded for p in past)} recorded, "
              f"{sum(sum(p.unexpected.values()) for p in past)} unexpected answers)")
        _nightly_credit(data_dir)
    proc = start_receiver(data_dir, port)
    try:
        wait_healthy(url, proc=proc)
        print(f"receiver up at {url}; simulating today's traffic ({clicks} clicks, seed {seed}) while "
              "the forwarder tells the demo publisher...", flush=True)
        summary, told = _forward_while(data_dir, lambda: simulate(url, data_dir, clicks=clicks, seed=seed))
        summary.stand_in_for_public_url = True
    finally:
        stop_receiver(proc)
    print(summary.describe())
    for line in told:
        print(line)
    status = _run_pipeline(data_dir)
    print()
    print("Where everything is:")
    where = DataDir(data_dir)
    print(f"  config         {where.config_path}")
    print(f"  fx rates       {where.fx_rates_path}")
    print(f"  event log      {where.segment_pattern} (one JSON record per request)")
    if where.warehouse_dir.exists():
        print(f"  tables         {where.warehouse_dir}/<table>/ (by click day) and {where.WAREHOUSE_DB_FILE}")
    if where.ledger_dir.exists():
        print(f"  wallet ledger  {where.ledger_dir}")
    print(f"  serve it again .venv/bin/clickledger serve --data {data_dir}   (make serve for data/demo)")
    notebooks = Path("notebooks")
    if notebooks.is_dir() and any(notebooks.glob("*.py")):
        print("  notebooks      make notebooks   (or: .venv/bin/clickledger notebook reconciliation)")
    return status


def _forward_while(data_dir: Path, traffic):  # noqa: ANN001, ANN202
    """Today's traffic with the forwarder running (clickledger.demo_publisher), when the
    pipeline is installed; else the traffic alone."""
    try:
        from clickledger.demo_publisher import forward_while
    except ImportError:
        return traffic(), []
    return forward_while(data_dir, traffic)


def _nightly_credit(data_dir: Path) -> None:
    """Last night's credit batch over the history, so today's chargebacks become debits."""
    try:
        from pipeline.runner import credit
    except ImportError:
        return
    midnight = datetime.now(UTC).replace(hour=0, minute=30, second=0, microsecond=0)
    report = credit(data_dir, now=midnight, batch_id=f"{midnight:%Y%m%d}-nightly")
    print(f"nightly credit batch {report.batch_id}: {report.credits} credits, {report.debits} debits")


def _run_pipeline(data_dir: Path) -> int:
    """Run the pipeline and the credit job over the demo log, when the pipeline is installed."""
    try:
        from clickledger.pipeline_cli import demo_steps
    except ImportError:
        return 0
    return demo_steps(data_dir)
