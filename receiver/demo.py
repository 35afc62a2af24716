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

DEMO_CONFIG = """\
# clickledger demo network: one partner per seed system (see README "Configuration").
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
    path = data_dir / "config.toml"
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
    path = data_dir / "fx_rates.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ensure_config(data_dir: Path) -> None:
    """Create a demo config (and fx rates) where none exists, so `serve` always has one."""
    if not (data_dir / "config.toml").exists():
        write_demo_config(data_dir)
        print(f"created {data_dir / 'config.toml'} (the demo network; edit it for yours)")
    if not (data_dir / "fx_rates.csv").exists():
        write_fx_rates(data_dir)


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


def start_receiver(data_dir: Path, port: int, threads: int = 16) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "serve", "--data", str(data_dir), "--port", str(port),
         "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
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


def run_demo(data_dir: Path, *, port: int = 0, clicks: int = 250, seed: int = 7, history_days: int = 13) -> int:
    """A fresh demo: config, two weeks of history, today's traffic over HTTP, then the pipeline."""
    from receiver.simulate import simulate, simulate_history

    data_dir = Path(data_dir)
    for generated in ("log", "index", "warehouse", "ledger"):
        shutil.rmtree(data_dir / generated, ignore_errors=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    write_demo_config(data_dir, public_url=url)
    write_fx_rates(data_dir)
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
        print(f"receiver up at {url}; simulating today's traffic ({clicks} clicks, seed {seed})...", flush=True)
        summary = simulate(url, data_dir, clicks=clicks, seed=seed)
    finally:
        stop_receiver(proc)
    print(summary.describe())
    status = _run_pipeline(data_dir)
    print()
    print("Where everything is:")
    print(f"  config         {data_dir / 'config.toml'}")
    print(f"  fx rates       {data_dir / 'fx_rates.csv'}")
    print(f"  event log      {data_dir / 'log'}/segment-*.ndjson (one JSON record per request)")
    if (data_dir / "warehouse").exists():
        print(f"  tables         {data_dir / 'warehouse'}/*.parquet and warehouse.duckdb")
    if (data_dir / "ledger").exists():
        print(f"  wallet ledger  {data_dir / 'ledger'}")
    print(f"  serve it again .venv/bin/clickledger serve --data {data_dir}   (make serve for data/demo)")
    notebooks = Path("notebooks")
    if notebooks.is_dir() and any(notebooks.glob("*.py")):
        print("  notebooks      make notebooks   (or: .venv/bin/clickledger notebook reconciliation)")
    return status


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
        from pipeline.cli import demo_steps
    except ImportError:
        return 0
    return demo_steps(data_dir)
