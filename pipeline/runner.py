"""Orchestration: log -> staging -> tables -> checks -> warehouse, and the credit job around it.

`run(data)` derives every table from DATA/log/, validates each with its pandera
schema, checks that the receiver's answers and the conversions agree (raising
PipelineConsistencyError before anything is written), writes the warehouse and
returns a RunSummary. `credit(data)` derives the conversions the same way, appends
the wallet batch, then refreshes the wallet tables. Neither prints: warnings go to
the `clickledger.pipeline` logger and into the summary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from pipeline import schemas
from pipeline.conversions import PairHistory, build_conversions, check_consistency, pair_history
from pipeline.earnings import build_earnings
from pipeline.errors import PipelineConfigError, PipelineConsistencyError, PipelineError
from pipeline.events import build_clicks, build_postbacks
from pipeline.forwarding.tables import build_delivery_tables
from pipeline.fx import read_fx_rates
from pipeline.issues import ISSUE_EVENT_COLUMNS, ISSUE_KINDS, build_issues
from pipeline.staging import STAGED_SCHEMA, StagedLog, stage_log
from pipeline.wallet import CreditReport, build_wallet_tables, credit_batch
from pipeline.warehouse import Warehouse, write_tables
from receiver.contract.config import Config, ConfigError
from receiver.contract.config_file import load_config
from receiver.contract.datadir import DataDir
from receiver.contract.framing import BadLine

log = logging.getLogger("clickledger.pipeline")

Progress = Callable[[int, int, Path], None]


@dataclass
class RunSummary:
    """What a run read and derived; `describe()` is the CLI's summary."""

    data_dir: Path
    base_currency: str
    segments: int = 0
    cached_segments: int = 0
    events: int = 0
    skipped: list[BadLine] = field(default_factory=list)
    clicks: int = 0
    postbacks: int = 0
    results: dict[str, int] = field(default_factory=dict)
    conversions: int = 0
    counted: int = 0
    pending: int = 0
    rejected: int = 0
    unknown: int = 0
    amount_base: Decimal = Decimal(0)
    affiliate_payout_base: Decimal = Decimal(0)
    margin_base: Decimal = Decimal(0)
    issues: dict[str, int] = field(default_factory=dict)
    wallet_entries: int = 0
    fx_file_missing: bool = False
    written: bool = False
    warehouse: Warehouse | None = None

    @property
    def torn(self) -> list[BadLine]:
        return [b for b in self.skipped if b.torn]

    @property
    def corrupt(self) -> list[BadLine]:
        return [b for b in self.skipped if not b.torn]

    def describe(self) -> str:
        cur = self.base_currency
        refused = sum(n for r, n in self.results.items() if r not in ("recorded", "duplicate", "test"))
        lines = [
            f"clickledger run: {self.events:,} events read from {self.segments} segment(s)"
            + (f" ({self.cached_segments} from the staging cache)" if self.cached_segments else ""),
            f"  clicks       {self.clicks:,}",
            f"  postbacks    {self.postbacks:,} (recorded {self.results.get('recorded', 0):,}, duplicate "
            f"{self.results.get('duplicate', 0):,}, test {self.results.get('test', 0):,}, refused {refused:,})",
            f"  conversions  {self.conversions:,} (counted {self.counted:,}, pending {self.pending:,}, "
            f"rejected {self.rejected:,}" + (f", unknown status {self.unknown:,}" if self.unknown else "") + ")",
            f"  earnings     {self.amount_base:,.2f} {cur} counted, {self.affiliate_payout_base:,.2f} {cur} to "
            f"affiliates and users, margin {self.margin_base:,.2f} {cur}",
        ]
        total = sum(self.issues.values())
        top = ", ".join(f"{r} {n:,}" for r, n in sorted(self.issues.items(), key=lambda x: (-x[1], x[0]))[:8])
        lines.append(f"  issues       {total:,}" + (f" ({top})" if top else ""))
        if self.wallet_entries:
            lines.append(f"  wallet       {self.wallet_entries:,} ledger entries")
        for bad in self.skipped:
            what = "torn last line" if bad.torn else "CORRUPT line"
            lines.append(f"  skipped      {what} {bad.line_no} of {bad.segment.name}")
        if self.fx_file_missing:
            lines.append(f"  warning      no {DataDir.FX_RATES_FILE}: conversions not in the base currency do not count")
        if self.written:
            data = DataDir(self.data_dir)
            lines.append(f"  tables       {data.warehouse_dir}/*.parquet and {data.WAREHOUSE_DB_FILE}")
        return "\n".join(lines)


CLICK_COLUMNS = ["kind", "result", "click_id", "seq", "offer_currency", "revenue_share_percent",
                 "revenue_share_fixed", "offer_id", "received_at", "source", "user_id", "slug", "product_id",
                 "partner_id", "affiliate_id", "remote_addr", "forwarded_for", "user_agent", "referer", "expires_at",
                 "custom_data", "task_url", "redirect_url", "event_id"]


def _postback_columns() -> list[str]:
    wanted = {*schemas.polars_schema("postbacks"), "key_partner_id", "error", "kind", "result", "partner_id", "seq",
              "reversal"}
    return [c for c in STAGED_SCHEMA if c in wanted]


def _issue_columns() -> list[str]:
    wanted = {*schemas.polars_schema("postback_issues"), "event_id", "kind", "path", "remote_addr", "forwarded_for",
              "partner_id", "key_partner_id", "result", "error", "click_id", "seq", *ISSUE_EVENT_COLUMNS}
    return [c for c in STAGED_SCHEMA if c in wanted]


def load_pipeline_config(data_dir: str | os.PathLike[str]) -> Config:
    try:
        return load_config(DataDir(data_dir).config_path)
    except ConfigError as exc:
        raise PipelineConfigError(str(exc)) from None


@dataclass
class DerivedConversions:
    """The clicks, postbacks, status history and conversions of the log: what every table and
    the forwarder (pipeline.forwarding) start from, derived one way only."""

    config: Config
    rates: pl.DataFrame
    staged: StagedLog
    clicks: pl.DataFrame
    postbacks: pl.DataFrame
    history: PairHistory
    conversions: pl.DataFrame


def derive_conversions(data_dir: str | os.PathLike[str], *, skip_corrupt: bool = False,
                       progress: Progress | None = None, use_cache: bool = True) -> DerivedConversions:
    """Clicks, postbacks, their status history and the conversions (validated and
    consistency-checked), without the other tables."""
    data = DataDir(data_dir)
    config = load_pipeline_config(data)
    fx_path = data.fx_rates_path
    rates = read_fx_rates(fx_path)
    if not fx_path.exists():
        log.warning("%s not found: conversions outside %s will not count", fx_path, config.base_currency)
    cache = data.staging_dir if use_cache else None
    staged: StagedLog = stage_log(data.log_dir, cache_dir=cache, skip_corrupt=skip_corrupt, progress=progress)
    problems = check_consistency(staged.rows)
    if problems:
        raise PipelineConsistencyError(problems)
    # each table reads only its rows and columns of the staged log (all of it would not fit in memory)
    clicks = schemas.validate("clicks", build_clicks(staged.select(CLICK_COLUMNS, ("click",)), config))
    # the statuses of profile partners are mapped here, with this run's config: never cached
    postbacks = schemas.validate("postbacks", build_postbacks(staged.select(_postback_columns(), ("postback",)),
                                                              config))
    history = pair_history(postbacks)  # status steps and conflicts: for the conversions and the issues
    conversions = schemas.validate(
        "conversions", build_conversions(postbacks, clicks, rates, config.base_currency, history, config))
    recorded = postbacks.filter(pl.col("result") == "recorded").height
    if conversions.height != recorded:  # the derivation itself must never lose or invent one
        raise PipelineError(f"internal error: {recorded} recorded postbacks but {conversions.height} conversions")
    return DerivedConversions(config, rates, staged, clicks, postbacks, history, conversions)


def derive(data_dir: str | os.PathLike[str], *, skip_corrupt: bool = False, progress: Progress | None = None,
           use_cache: bool = True) -> tuple[dict[str, pl.DataFrame], RunSummary]:
    """Every table derived from the log (validated and consistency-checked), without writing them."""
    data_dir = Path(data_dir)
    data = DataDir(data_dir)
    core = derive_conversions(data_dir, skip_corrupt=skip_corrupt, progress=progress, use_cache=use_cache)
    config, fx_path, rates, staged = core.config, data.fx_rates_path, core.rates, core.staged
    clicks, postbacks, history, conversions = core.clicks, core.postbacks, core.history, core.conversions
    earnings = schemas.validate("earnings", build_earnings(conversions))
    issue_events = staged.select(_issue_columns(), ISSUE_KINDS)
    issues = schemas.validate("postback_issues", build_issues(issue_events, postbacks, clicks, conversions, history,
                                                              config))
    del issue_events
    wallet_credits, wallet_balances = build_wallet_tables(data_dir)
    deliveries, delivery_attempts = build_delivery_tables(data_dir, config)
    tables = {
        "clicks": clicks,
        "postbacks": postbacks,
        "conversions": conversions,
        "earnings": earnings,
        "postback_issues": issues,
        "wallet_credits": schemas.validate("wallet_credits", wallet_credits),
        "wallet_balances": schemas.validate("wallet_balances", wallet_balances),
        "fx_rates": rates,
        "deliveries": schemas.validate("deliveries", deliveries),
        "delivery_attempts": schemas.validate("delivery_attempts", delivery_attempts),
    }
    counted = conversions.filter(pl.col("counts"))
    summary = RunSummary(
        data_dir=data_dir,
        base_currency=config.base_currency,
        segments=len(staged.segments),
        cached_segments=staged.cached,
        events=staged.rows.select(pl.len()).collect().item(),
        skipped=list(staged.skipped),
        clicks=clicks.height,
        postbacks=postbacks.height,
        results=dict(postbacks.group_by("result").len().iter_rows()),
        conversions=conversions.height,
        counted=counted.height,
        pending=conversions.filter(pl.col("status") == "pending").height,
        rejected=conversions.filter(pl.col("status") == "rejected").height,
        unknown=conversions.filter(pl.col("status") == "unknown").height,
        amount_base=counted["amount_base"].sum() or Decimal(0),
        affiliate_payout_base=counted["affiliate_payout_base"].sum() or Decimal(0),
        issues=dict(issues.group_by("reason").len().iter_rows()),
        wallet_entries=wallet_credits.height,
        fx_file_missing=not fx_path.exists(),
    )
    summary.margin_base = summary.amount_base - summary.affiliate_payout_base
    return tables, summary


def run(data_dir: str | os.PathLike[str], *, skip_corrupt: bool = False,
        progress: Progress | None = None) -> RunSummary:
    """Derive every table from DATA/log/ and write DATA/warehouse/ (see `clickledger run`)."""
    tables, summary = derive(data_dir, skip_corrupt=skip_corrupt, progress=progress)
    directory = DataDir(data_dir).warehouse_dir
    write_tables(directory, tables)
    summary.written = True
    summary.warehouse = Warehouse(tables, directory)
    return summary


def credit(data_dir: str | os.PathLike[str], *, now: datetime | None = None, batch_id: str | None = None,
           skip_corrupt: bool = False, progress: Progress | None = None) -> CreditReport:
    """The wallet-credit batch job: derive conversions, append new credits/debits, refresh the wallet tables."""
    data_dir = Path(data_dir)
    tables, summary = derive(data_dir, skip_corrupt=skip_corrupt, progress=progress)
    report = credit_batch(data_dir, tables["conversions"], base_currency=summary.base_currency,
                          now=now, batch_id=batch_id)
    wallet_credits, wallet_balances = build_wallet_tables(data_dir)
    tables["wallet_credits"] = schemas.validate("wallet_credits", wallet_credits)
    tables["wallet_balances"] = schemas.validate("wallet_balances", wallet_balances)
    write_tables(DataDir(data_dir).warehouse_dir, tables)
    return report
