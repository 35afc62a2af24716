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
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

import polars as pl

from pipeline import partitions, schemas
from pipeline.conversions import PairHistory, build_conversions, check_consistency, pair_history
from pipeline.earnings import build_earnings
from pipeline.errors import (
    InconsistentEvent,
    PipelineConfigError,
    PipelineConsistencyError,
    PipelineError,
)
from pipeline.events import build_clicks, build_postbacks
from pipeline.forwarding.tables import build_delivery_tables
from pipeline.fx import read_fx_rates
from pipeline.issues import ISSUE_EVENT_COLUMNS, ISSUE_KINDS, build_issues
from pipeline.nearest import index_for
from pipeline.staging import STAGED_SCHEMA, StagedLog, stage_log
from pipeline.wallet import CreditReport, build_wallet_tables, credit_batch
from pipeline.wallet.ledger import ledger_path
from pipeline.warehouse import Warehouse, load, write_tables
from receiver.contract.config import Config, ConfigError
from receiver.contract.config_file import load_config
from receiver.contract.datadir import DataDir
from receiver.contract.framing import BadLine
from receiver.contract.params import click_id_shape

log = logging.getLogger("clickledger.pipeline")

Progress = Callable[[int, int, Path], None]
DERIVE_THREADS = 2  # batches of click days derived at once (a 2-core budget)
DERIVE_BATCH_ROWS = 250_000  # routed rows per batch of click days (a day bigger than this is a batch alone);
# at 1M events (staging cached): per day 40 s of CPU and a 0.7 GB peak; 400k rows 26 s and 1.85 GB;
# 250k rows 26 s and 1.27 GB


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
            lines.append(f"  tables       {data.warehouse_dir}/<table>/ (by click day) and {data.WAREHOUSE_DB_FILE}")
        return "\n".join(lines)


CLICK_COLUMNS = ["kind", "result", "click_id", "seq", "offer_currency", "revenue_share_percent",
                 "revenue_share_fixed", "offer_id", "received_at", "source", "user_id", "slug", "product_id",
                 "partner_id", "affiliate_id", "remote_addr", "forwarded_for", "user_agent", "referer", "expires_at",
                 "custom_data", "task_url", "redirect_url", "event_id"]


def postback_columns() -> list[str]:
    wanted = {*schemas.polars_schema("postbacks"), "key_partner_id", "error", "kind", "result", "partner_id", "seq",
              "reversal"}
    return [c for c in STAGED_SCHEMA if c in wanted]


def issue_columns() -> list[str]:
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
    """The clicks, postbacks, status history and conversions of some staged rows: what every
    table and the forwarder (pipeline.forwarding) start from, derived one way only."""

    config: Config
    rates: pl.DataFrame
    staged: StagedLog
    clicks: pl.DataFrame
    postbacks: pl.DataFrame
    history: PairHistory
    conversions: pl.DataFrame


def derive_staged_conversions(staged: StagedLog, config: Config, rates: pl.DataFrame) -> DerivedConversions:
    """Clicks, postbacks, their status history and the conversions of these staged rows, each
    validated: of the whole log or of one batch of click days (pipeline.partitions)."""
    # each table reads only its rows and columns of the staged log (all of it would not fit in memory)
    clicks = schemas.validate("clicks", build_clicks(staged.select(CLICK_COLUMNS, ("click",)), config))
    # the statuses of profile partners are mapped here, with this run's config: never cached
    postbacks = schemas.validate("postbacks", build_postbacks(staged.select(postback_columns(), ("postback",)),
                                                              config))
    history = pair_history(postbacks)  # status steps and conflicts: for the conversions and the issues
    conversions = schemas.validate(
        "conversions", build_conversions(postbacks, clicks, rates, config.base_currency, history, config))
    recorded = postbacks.filter(pl.col("result") == "recorded").height
    if conversions.height != recorded:  # the derivation itself must never lose or invent one
        raise PipelineError(f"internal error: {recorded} recorded postbacks but {conversions.height} conversions")
    return DerivedConversions(config, rates, staged, clicks, postbacks, history, conversions)


def derive_log_tables(staged: StagedLog, config: Config, rates: pl.DataFrame,
                      nearest_candidates: pl.DataFrame | None = None) -> tuple[pl.DataFrame, ...]:
    """(clicks, postbacks, conversions, earnings, postback_issues) of these staged rows, each
    validated: of the whole log (`derive`) or of one click day's routed rows (pipeline.partitions).
    `nearest_candidates` (click_id) adds the known clicks of other days that the nearest-click
    search may answer with."""
    core = derive_staged_conversions(staged, config, rates)
    clicks, postbacks, conversions = core.clicks, core.postbacks, core.conversions
    earnings = schemas.validate("earnings", build_earnings(conversions))
    issue_events = staged.select(issue_columns(), ISSUE_KINDS)
    known = clicks
    if nearest_candidates is not None and nearest_candidates.height:
        others = nearest_candidates.join(clicks.select("click_id"), on="click_id", how="anti")
        known = pl.concat([clicks.select("click_id", "partner_id"),
                           others.select("click_id", pl.lit(None, dtype=pl.String).alias("partner_id"))])
    issues = schemas.validate("postback_issues", build_issues(issue_events, postbacks, known, conversions,
                                                              core.history, config))
    return clicks, postbacks, conversions, earnings, issues


def _stage_for_derive(data: DataDir, *, skip_corrupt: bool, progress: Progress | None,
                      use_cache: bool) -> tuple[Config, pl.DataFrame, StagedLog]:
    config = load_pipeline_config(data)
    fx_path = data.fx_rates_path
    rates = read_fx_rates(fx_path)
    if not fx_path.exists():
        log.warning("%s not found: conversions outside %s will not count", fx_path, config.base_currency)
    cache = data.staging_dir if use_cache else None
    staged: StagedLog = stage_log(data.log_dir, cache_dir=cache, skip_corrupt=skip_corrupt, progress=progress,
                                  tmp_dir=data.warehouse_tmp_dir)
    problems = check_consistency(staged.rows)
    if problems:
        raise PipelineConsistencyError(problems)
    return config, rates, staged


def derive_conversions(data_dir: str | os.PathLike[str], *, skip_corrupt: bool = False,
                       progress: Progress | None = None, use_cache: bool = True) -> DerivedConversions:
    """Clicks, postbacks, their status history and the conversions of the whole log (validated
    and consistency-checked), without the other tables: what the forwarder plans from."""
    config, rates, staged = _stage_for_derive(DataDir(data_dir), skip_corrupt=skip_corrupt, progress=progress,
                                              use_cache=use_cache)
    return derive_staged_conversions(staged, config, rates)


def derive(data_dir: str | os.PathLike[str], *, skip_corrupt: bool = False, progress: Progress | None = None,
           use_cache: bool = True) -> tuple[dict[str, pl.DataFrame], RunSummary]:
    """Every table derived from the log (validated and consistency-checked), without writing them."""
    data_dir = Path(data_dir)
    data = DataDir(data_dir)
    fx_path = data.fx_rates_path
    config, rates, staged = _stage_for_derive(data, skip_corrupt=skip_corrupt, progress=progress,
                                              use_cache=use_cache)
    clicks, postbacks, conversions, earnings, issues = derive_log_tables(staged, config, rates)
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
    """Derive the tables from DATA/log/ and write DATA/warehouse/ (see `clickledger run`): only the
    click days that new or grown segments touch are derived again (pipeline.partitions)."""
    data_dir = Path(data_dir)
    data = DataDir(data_dir)
    summary, _ = _run_partitioned(data, skip_corrupt=skip_corrupt, progress=progress)
    return summary


def _run_partitioned(data: DataDir, *, skip_corrupt: bool,
                     progress: Progress | None) -> tuple[RunSummary, partitions.RunState]:
    config = load_pipeline_config(data)
    fx_path = data.fx_rates_path
    rates = read_fx_rates(fx_path)
    if not fx_path.exists():
        log.warning("%s not found: conversions outside %s will not count", fx_path, config.base_currency)
    tmp = data.warehouse_tmp_dir
    staged = stage_log(data.log_dir, cache_dir=data.staging_dir, skip_corrupt=skip_corrupt, progress=progress,
                       tmp_dir=tmp)
    seqs = staged.rows.select("seq")
    if seqs.filter(pl.col("seq").is_duplicated()).select(pl.len()).collect().item():
        raise PipelineConsistencyError(check_consistency(staged.rows))  # the rare path: every row, to say which
    max_seq = seqs.select(pl.col("seq").max()).collect().item() or 0
    state = partitions.RunState.read(data.run_state_path)
    inputs = partitions.inputs_digest(data)
    run_dir = tmp / f"run-{uuid.uuid4().hex[:12]}"
    sources = dict(staged.files)
    routes_part: Path | None = None
    try:
        for name, frame in staged.frames.items():  # segments the cache does not hold (a bad line)
            run_dir.mkdir(parents=True, exist_ok=True)
            sources[name] = run_dir / f"{name}.parquet"
            frame.write_parquet(sources[name])
        old_rates_path = data.warehouse_dir / "fx_rates.parquet"
        old_rates = pl.read_parquet(old_rates_path) if old_rates_path.exists() else None
        affected, routes_part = partitions.plan_and_route(data, staged.keys, sources,
                                                          state if old_rates is not None else None, inputs)
        if not affected.full and old_rates is not None:  # days whose conversions new fx rates move
            affected.days |= partitions.fx_changed_days(data.warehouse_dir, old_rates, rates) - affected.gone
        days = sorted(affected.days)
        candidates = _nearest_candidates(data, affected.days)
        problems: list[InconsistentEvent] = []

        def derive_batch(batch: list[date]) -> list[InconsistentEvent]:
            """Some click days together (their rows never meet across days: a click's pairs all route to
            its day), checked, derived, validated and written under run_dir day by day; the problems."""
            rows = pl.concat([partitions.day_rows(data, day).with_columns(
                pl.lit(day).alias(partitions.PARTITION_KEY)) for day in batch]).sort("seq", maintain_order=True)
            batch_staged = StagedLog(rows.drop(partitions.PARTITION_KEY).lazy())
            found = check_consistency(batch_staged.rows)
            if found:
                return found
            day_of = rows.select("seq", partitions.PARTITION_KEY)  # seq is unique in the log (checked)
            del rows
            clicks, postbacks, conversions, _, issues = derive_log_tables(batch_staged, config, rates, candidates)
            for table, frame in zip(partitions.BY_CLICK_DAY, (clicks, postbacks, conversions, issues), strict=True):
                routed = frame.join(day_of, on="seq", how="left", maintain_order="left")
                for day in batch:
                    partitions.write_partition(run_dir, table, day, routed.filter(
                        pl.col(partitions.PARTITION_KEY) == day).drop(partitions.PARTITION_KEY))
            return []

        # Days are derived a batch at a time (DERIVE_BATCH_ROWS rows: fixed costs, pandera's above all,
        # paid per batch, memory bounded by it), two batches at once (Polars and the Parquet writes
        # release the GIL, so one batch's Python overlaps the other's columnar work).
        batches = partitions.day_batches(data, days, DERIVE_BATCH_ROWS)
        with ThreadPoolExecutor(max_workers=DERIVE_THREADS, thread_name_prefix="derive") as pool:
            finished = 0
            for batch, found in zip(batches, pool.map(derive_batch, batches), strict=True):
                finished += len(batch)
                if progress is not None:
                    progress(finished, len(days), f"click_day={batch[-1].isoformat()}")
                problems += found
        if problems:
            raise PipelineConsistencyError(sorted(problems, key=lambda p: (p.seq or 0, p.problem)))
        # everything derived and checked: into place, then the earnings of the days those conversions fall on
        changed = affected.days | affected.gone
        earning_days = partitions.conversion_days(data.warehouse_dir, changed)
        if affected.full:
            earning_days |= {partitions._day_of(d.parent)
                             for d in partitions.partition_files(data.warehouse_dir / partitions.EARNINGS)}
        partitions.commit_partitions(run_dir, data.warehouse_dir, affected.days, affected.gone)
        earning_days |= partitions.conversion_days(data.warehouse_dir, changed)
        partitions.rebuild_earnings(data.warehouse_dir, earning_days, build_earnings)
        if routes_part.exists():
            data.routes_dir.mkdir(parents=True, exist_ok=True)
            os.replace(routes_part, data.routes_dir / routes_part.name)
        new_state = partitions.RunState(inputs, dict(staged.keys), max_seq)
        if state is not None:  # what the credit job has still to look at, and what it found last time
            new_state.credit_days = list(state.credit_days)
            new_state.ledger_size, new_state.credit_skipped = state.ledger_size, state.credit_skipped
        # everything re-derived: the next credit job looks at every day
        new_state.credit_days += ["*"] if affected.full else [d.isoformat() for d in days]
        new_state.write(data.run_state_path)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if routes_part is not None:
            routes_part.unlink(missing_ok=True)
    wallet_credits, wallet_balances = build_wallet_tables(data.root)
    deliveries, delivery_attempts = build_delivery_tables(data.root, config)
    write_tables(data.warehouse_dir, {"wallet_credits": schemas.validate("wallet_credits", wallet_credits),
                                      "wallet_balances": schemas.validate("wallet_balances", wallet_balances),
                                      "fx_rates": rates,
                                      "deliveries": schemas.validate("deliveries", deliveries),
                                      "delivery_attempts": schemas.validate("delivery_attempts", delivery_attempts)})
    summary = _summarize(data, config.base_currency, staged, fx_missing=not fx_path.exists())
    summary.wallet_entries = wallet_credits.height
    summary.written = True
    summary.warehouse = load(data.root)
    return summary, new_state


def _nearest_candidates(data: DataDir, days: set) -> pl.DataFrame | None:
    """The known clicks (of any day) that the nearest-click search can answer with for the
    unknown click ids sent to these days: found once per run over every click id on disk."""
    sent = [s for s in partitions.unknown_click_ids_sent(data, days) if click_id_shape(s) in ("malformed", "uuid")]
    if not sent:
        return None
    index = index_for(partitions.click_ids_on_disk(data), sent)
    return pl.DataFrame({"click_id": sorted(index.original.values())}, schema={"click_id": pl.String})


def _summarize(data: DataDir, base_currency: str, staged: StagedLog, *, fx_missing: bool) -> RunSummary:
    """The run's summary, from the whole warehouse read column-wise (every day, not only those derived)."""
    wh = data.warehouse_dir
    scan = partial(partitions.scan_table, wh)
    postbacks = scan("postbacks").group_by("result").len().collect()
    conversions = scan("conversions").group_by("status", "counts").agg(
        pl.len().alias("n"), pl.col("amount_base").sum(), pl.col("affiliate_payout_base").sum()).collect()
    counted = conversions.filter(pl.col("counts"))

    def statuses(status: str) -> int:
        return int(conversions.filter(pl.col("status") == status)["n"].sum())

    summary = RunSummary(
        data_dir=data.root, base_currency=base_currency, segments=len(staged.segments),
        cached_segments=staged.cached, events=staged.rows.select(pl.len()).collect().item(),
        skipped=list(staged.skipped),
        clicks=scan("clicks").select(pl.len()).collect().item(),
        postbacks=int(postbacks["len"].sum()),
        results=dict(postbacks.iter_rows()),
        conversions=int(conversions["n"].sum()),
        counted=int(counted["n"].sum()),
        pending=statuses("pending"), rejected=statuses("rejected"), unknown=statuses("unknown"),
        amount_base=counted["amount_base"].sum() or Decimal(0),
        affiliate_payout_base=counted["affiliate_payout_base"].sum() or Decimal(0),
        issues=dict(scan("postback_issues").group_by("reason").len().collect().iter_rows()),
        fx_file_missing=fx_missing,
    )
    summary.margin_base = summary.amount_base - summary.affiliate_payout_base
    return summary


def credit(data_dir: str | os.PathLike[str], *, now: datetime | None = None, batch_id: str | None = None,
           skip_corrupt: bool = False, progress: Progress | None = None) -> CreditReport:
    """The wallet-credit batch job: bring the warehouse up to date (as `run`), append the credits and
    debits of the click days derived since the last credit job, refresh the wallet tables.

    Every conversion of a click lives in its click's day, and a day is derived again whenever a
    postback of it arrives: the days not derived since the last job have nothing new to credit, so
    a job reads only the earn conversions of the others (all of them after a full re-derivation)."""
    data = DataDir(data_dir)
    summary, state = _run_partitioned(data, skip_corrupt=skip_corrupt, progress=progress)
    ledger = ledger_path(data.root)
    days = state.credit_days
    if (ledger.stat().st_size if ledger.exists() else 0) != state.ledger_size:
        days = ["*"]  # the ledger is not as the last job left it (restored, repaired, first job): all days
    conversions = _earn_conversions(data, days)
    report = credit_batch(data.root, conversions, base_currency=summary.base_currency,
                          now=now, batch_id=batch_id)
    # the conversions not credited because their click was (one click = one credit) are reported by
    # every job: those of the days not looked at again are the last job's
    day_of = dict(zip(zip(conversions["click_id"], conversions["transaction_id"], strict=True),
                      conversions[partitions.PARTITION_KEY], strict=True))
    found = [{**s, partitions.PARTITION_KEY: day_of[(s["click_id"], s["transaction_id"])]} for s in report.skipped]
    kept = [] if "*" in days else [s for s in state.credit_skipped if s[partitions.PARTITION_KEY] not in days]
    state.credit_skipped = sorted(kept + found, key=lambda s: s["seq"])
    report.skipped = [{k: v for k, v in s.items() if k != partitions.PARTITION_KEY} for s in state.credit_skipped]
    # only once the ledger holds this batch: an interrupted job looks at these days again
    state.credit_days = []
    state.ledger_size = ledger.stat().st_size if ledger.exists() else 0
    state.write(data.run_state_path)
    wallet_credits, wallet_balances = build_wallet_tables(data.root)
    write_tables(data.warehouse_dir, {"wallet_credits": schemas.validate("wallet_credits", wallet_credits),
                                      "wallet_balances": schemas.validate("wallet_balances", wallet_balances)})
    return report


CREDIT_COLUMNS = ["click_id", "transaction_id", "user_id", "click_source", "counts", "affiliate_payout_base",
                  "base_currency", "event_id", "seq", "status", "last_event_id", "last_seq"]


def _earn_conversions(data: DataDir, days: list[str]) -> pl.DataFrame:
    """The earn conversions (click source earn, with a user) of these click days ("*": every day),
    with only the columns the credit job reads."""
    table_dir = data.warehouse_dir / "conversions"
    files = partitions.partition_files(table_dir)
    if "*" not in days:
        wanted = {f"{partitions.PARTITION_KEY}={day}" for day in days}
        files = [f for f in files if f.parent.name in wanted]
    schema = {**{c: schemas.polars_schema("conversions")[c] for c in CREDIT_COLUMNS},
              partitions.PARTITION_KEY: pl.String}
    if not files:
        return pl.DataFrame(schema=schema)
    frames = [pl.scan_parquet(f, hive_partitioning=False).select(CREDIT_COLUMNS)
              .filter((pl.col("click_source") == "earn") & pl.col("user_id").is_not_null())
              .with_columns(pl.lit(f.parent.name.split("=", 1)[1]).alias(partitions.PARTITION_KEY)) for f in files]
    return pl.concat(frames).collect().sort("seq")
