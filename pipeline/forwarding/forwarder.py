"""The forwarder: plan the deliveries the log calls for, send those due, record every attempt.

One forwarder runs per data directory (it holds DATA/ledger/.forward.lock). Each pass derives
the conversions (pipeline.runner.derive_conversions: the pipeline's own derivation), appends
the new points entries and then the new deliveries, and attempts what is due, a few at a time:
each attempt's intent is fsync'd before its request leaves and its outcome after, so a kill -9
at any moment loses nothing and a restart retries the same delivery id.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import polars as pl

from pipeline.errors import PipelineError
from pipeline.forwarding.ledger import DeliveryLog, append_points, read_points
from pipeline.forwarding.plan import plan_deliveries
from pipeline.forwarding.render import sign
from pipeline.forwarding.schedule import next_attempt_at, parse_retry_after
from pipeline.forwarding.sender import HttpSender, OutgoingRequest, SendResult
from pipeline.forwarding.state import Deliveries, Delivery, fold
from receiver.contract.config import Config, PublisherPostback
from receiver.contract.datadir import DataDir
from receiver.contract.files import FileLock, try_lock
from receiver.contract.framing import segment_paths
from receiver.contract.timeutil import format_utc

log = logging.getLogger("clickledger.pipeline")

Clock = Callable[[], datetime]
WORKERS = 4  # attempts in flight at once (a slow endpoint does not hold the others up)


class ForwardingError(PipelineError):
    """The forwarder cannot run (another one runs, an unknown delivery id...)."""


class Sender(Protocol):
    def send(self, request: OutgoingRequest) -> SendResult: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassReport:
    """What one pass planned and sent."""

    planned: int = 0
    points_entries: int = 0
    attempts: list[tuple[Delivery, SendResult, str]] = field(default_factory=list)  # (delivery, result, state)

    def count(self, state: str) -> int:
        return sum(1 for _, _, s in self.attempts if s == state)


class Forwarder:
    """The forwarder of one data directory; `close()` (or `with`) releases its lock."""

    def __init__(self, data_dir: str | os.PathLike[str], *, clock: Clock = utc_now, sender: Sender | None = None,
                 rng: random.Random | None = None, workers: int = WORKERS):
        self.data = DataDir(data_dir)
        self.data.ledger_dir.mkdir(parents=True, exist_ok=True)
        lock: FileLock | None = try_lock(self.data.forward_lock_path)
        if lock is None:
            raise ForwardingError(f"another forwarder is running on {self.data.root} "
                                  f"({self.data.forward_lock_path} is locked)")
        self._lock = lock
        self.clock = clock
        self.rng = rng or random.Random()
        self._injected_sender = sender
        self._http_sender: HttpSender | None = None
        self.workers = workers
        self.log = DeliveryLog(self.data.deliveries_path)
        self.config: Config | None = None
        self._rng_lock = threading.Lock()
        self._folded: tuple[int, Deliveries] | None = None
        self._planned: tuple[tuple[Any, ...], int] | None = None  # (config and fx mark, last seq planned)

    def close(self) -> None:
        self.log.close()
        self._lock.release()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ planning

    def sync(self, *, since: datetime | None = None, dry_run: bool = False) -> tuple[list[dict[str, Any]], int]:
        """Plan what the log calls for and is not planned yet: (new delivery records, new points
        entries). Points are appended (fsync'd) before the deliveries that carry them."""
        from pipeline.runner import derive_conversions

        inputs = self._inputs_mark()
        core = derive_conversions(self.data.root)
        self.config = core.config
        known = {r["delivery_id"] for r in self.log.records if r["kind"] == "planned"}
        conversions = core.conversions
        if since is None and self._planned is not None and self._planned[0] == inputs:
            # Same config and fx rates as the last pass: only a conversion with a status step
            # since then can have a new event (--follow plans on every append to the log).
            conversions = conversions.filter(pl.col("last_seq") > self._planned[1])
        plan = plan_deliveries(core.config, conversions, core.history, core.clicks, known=known,
                               points_ledger=read_points(self.data.points_path).entries, now=self.clock(),
                               since=since)
        if not dry_run:
            append_points(self.data.points_path, plan.points)
            self.log.append(plan.deliveries)
            self._planned = (inputs, int(core.conversions["last_seq"].max() or 0))
        return plan.deliveries, len(plan.points)

    def _inputs_mark(self) -> tuple[Any, ...]:
        """What, besides the log, changes which events a conversion has: the config and the fx rates."""
        mark = []
        for path in (self.data.config_path, self.data.fx_rates_path):
            try:
                stat = path.stat()
            except FileNotFoundError:
                mark.append((path.name, None))
                continue
            mark.append((path.name, stat.st_size, stat.st_mtime_ns))
        return tuple(mark)

    def state(self) -> Deliveries:
        """Every delivery's state, folded from the log (again only when a record was appended:
        `--follow` asks many times a second)."""
        count = len(self.log.records)
        if self._folded is None or self._folded[0] != count:
            self._folded = (count, fold(self.log.records))
        return self._folded[1]

    # ------------------------------------------------------------ sending

    @property
    def sender(self) -> Sender:
        """The injected sender, else an HttpSender following the current config's allow_private_targets."""
        if self._injected_sender is not None:
            return self._injected_sender
        allow = self.config.allow_private_targets if self.config is not None else False
        if self._http_sender is None or self._http_sender.allow_private_targets != allow:
            self._http_sender = HttpSender(allow_private_targets=allow)
        return self._http_sender

    def endpoint(self, delivery: Delivery) -> PublisherPostback | None:
        affiliate = self.config.affiliates.get(delivery.planned["affiliate"]) if self.config else None
        if affiliate is None:
            return None
        return next((p for p in affiliate.postbacks if p.endpoint_id == delivery.planned["endpoint_id"]), None)

    def request(self, delivery: Delivery, now: datetime) -> OutgoingRequest:
        """The attempt's request: the planned URL and body, signed now when the endpoint has a secret."""
        planned = delivery.planned
        body = planned["body"].encode() if planned["method"] == "POST" else b""
        headers: dict[str, str] = {}
        endpoint = self.endpoint(delivery)
        if endpoint is not None and endpoint.signing_secret is not None:
            timestamp = int(now.timestamp())
            headers = {"webhook-id": delivery.id, "webhook-timestamp": str(timestamp),
                       "webhook-signature": sign(endpoint.signing_secret, delivery.id, timestamp, body)}
        return OutgoingRequest(delivery.id, planned["method"], planned["url"], body, headers)

    def attempt(self, delivery: Delivery) -> tuple[SendResult, str]:
        """One attempt: its intent recorded, the request sent, its outcome recorded."""
        number = (delivery.last.number if delivery.last else 0) + 1
        started = self.clock()
        self.log.append([{"kind": "attempt", "delivery_id": delivery.id, "attempt": number,
                          "started_at": format_utc(started)}])
        result = self.sender.send(self.request(delivery, started))
        finished = self.clock()
        status = result.http_status
        retry_after = None
        if status is not None and 200 <= status < 300:
            state, nxt = "delivered", None
        elif status == 410:
            state, nxt = "stopped", None
        else:
            if status in (429, 503):
                retry_after = parse_retry_after(result.retry_after, finished)
            with self._rng_lock:
                nxt = next_attempt_at(delivery.in_schedule + 1, finished, self.rng, retry_after)
            state = "failed" if nxt is not None else "exhausted"
        error = result.error
        if error is None and status is not None and not 200 <= status < 300:
            error = _status_error(status, result)
        records = [{"kind": "outcome", "delivery_id": delivery.id, "attempt": number,
                    "finished_at": format_utc(finished), "http_status": status, "error": error, "state": state,
                    "next_attempt_at": format_utc(nxt) if nxt else None, "duration_ms": result.duration_ms,
                    "retry_after": result.retry_after}]
        if state == "stopped":
            records.append({"kind": "stop_endpoint", "affiliate": delivery.planned["affiliate"],
                            "endpoint_id": delivery.planned["endpoint_id"], "endpoint": delivery.planned["endpoint"],
                            "delivery_id": delivery.id, "at": format_utc(finished)})
        self.log.append(records)
        return result, state

    def send_due(self, *, limit_passes: int = 100) -> PassReport:
        """Attempt every delivery due now; a delivery whose previous event was just delivered is
        due in the next round. Each delivery is attempted at most once per call."""
        report = PassReport()
        if self.config is None:
            from pipeline.runner import load_pipeline_config

            self.config = load_pipeline_config(self.data.root)
        tried: set[str] = set()
        for _ in range(limit_passes):
            deliveries = self.state()
            due = [d for d in deliveries.due(self.clock()) if d.id not in tried and self.endpoint(d) is not None]
            if not due:
                break
            tried.update(d.id for d in due)
            # one worker per endpoint, its deliveries one after another: a 410 stops the rest at
            # once, and no endpoint gets more than one request from us at a time
            by_endpoint: dict[tuple[str, str], list[Delivery]] = {}
            for delivery in due:
                by_endpoint.setdefault(delivery.endpoint_key, []).append(delivery)
            queues = list(by_endpoint.values())
            if len(queues) == 1 or self.workers <= 1:
                results = [self._attempt_queue(q) for q in queues]
            else:
                with ThreadPoolExecutor(max_workers=min(self.workers, len(queues))) as pool:
                    results = list(pool.map(self._attempt_queue, queues))
            for done in results:
                report.attempts.extend(done)
        return report

    def _attempt_queue(self, queue: list[Delivery]) -> list[tuple[Delivery, SendResult, str]]:
        done = []
        for delivery in queue:
            result, state = self.attempt(delivery)
            done.append((delivery, result, state))
            if state == "stopped":
                break  # the endpoint is gone: the others stay stopped, unsent
        return done

    def run_once(self, *, since: datetime | None = None) -> PassReport:
        """One pass: plan, then send everything due."""
        planned, points = self.sync(since=since)
        report = self.send_due()
        report.planned, report.points_entries = len(planned), points
        return report

    # ------------------------------------------------------------ asking again

    def reopen(self, delivery_ids: list[str], reason: str) -> None:
        """Ask for deliveries again (a new schedule from now; a stopped endpoint reopened)."""
        known = self.state().by_id
        unknown = [d for d in delivery_ids if d not in known]
        if unknown:
            raise ForwardingError(f"no delivery {unknown[0]!r} in {self.log.path} "
                                  "(`clickledger deliveries` lists them)")
        when = format_utc(self.clock())
        self.log.append([{"kind": "reopen", "delivery_id": d, "at": when, "reason": reason} for d in delivery_ids])

    def replay(self, affiliate: str, since: date) -> list[str]:
        """Every delivery to `affiliate` of events recorded on or after `since` (UTC), planned if
        missing and asked for again, delivered ones included: after a publisher's outage."""
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        self.sync()
        if self.config is None or affiliate not in self.config.affiliates:
            raise ForwardingError(f"affiliate {affiliate!r} is not in config.toml's [[affiliates]]")
        ids = [d.id for d in self.state().by_id.values()
               if d.planned["affiliate"] == affiliate and d.planned["step_at"] >= format_utc(start)]
        if ids:
            self.reopen(ids, f"replay since {since.isoformat()}")
        return ids

    # ------------------------------------------------------------ following the log

    def follow(self, stop: threading.Event, *, poll: float = 0.1,
               on_pass: Callable[[PassReport], None] | None = None) -> None:
        """Until `stop` is set: plan when the log or the config changes, send what is due."""
        seen: tuple[Any, ...] | None = None
        while not stop.is_set():
            mark = self._log_mark()
            report = PassReport()
            if mark != seen:
                planned, points = self.sync()
                report.planned, report.points_entries = len(planned), points
                seen = mark
            sent = self.send_due()
            report.attempts = sent.attempts
            if on_pass is not None and (report.planned or report.attempts):
                on_pass(report)
            stop.wait(poll)

    def _log_mark(self) -> tuple[Any, ...]:
        """What changes when a record is appended to the log, or the config or fx rates are edited."""
        files = [*segment_paths(self.data.log_dir), self.data.config_path, self.data.fx_rates_path]
        mark = []
        for path in files:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            mark.append((path.name, stat.st_size, stat.st_mtime_ns))
        return tuple(mark)


def _status_error(status: int, result: SendResult) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: a redirect (not followed; point the endpoint at its final URL)"
    if status == 410:
        return "HTTP 410 Gone: the endpoint is stopped (forward --resend or --replay reopens it)"
    if status in (429, 503) and result.retry_after:
        return f"HTTP {status}, Retry-After {result.retry_after}"
    excerpt = " ".join(result.body_excerpt.split())[:120]
    return f"HTTP {status}" + (f": {excerpt}" if excerpt else "")


def preview(data_dir: str | os.PathLike[str], *, clock: Clock = utc_now) -> list[dict[str, Any]]:
    """What a pass would send now, writing nothing (`forward --dry-run`): the planned records of
    the deliveries due, the new ones included. Needs no lock: it only reads."""
    from pipeline.forwarding.ledger import read_delivery_log
    from pipeline.runner import derive_conversions

    data = DataDir(data_dir)
    records, _ = read_delivery_log(data.deliveries_path)
    core = derive_conversions(data.root)
    known = {r["delivery_id"] for r in records if r["kind"] == "planned"}
    plan = plan_deliveries(core.config, core.conversions, core.history, core.clicks, known=known,
                           points_ledger=read_points(data.points_path).entries, now=clock())
    state = fold([*records, *plan.deliveries])
    endpoints = {(a.id, p.endpoint_id) for a in core.config.affiliates.values() for p in a.postbacks}
    return [d.planned for d in state.due(clock()) if d.endpoint_key in endpoints]


def refresh_tables(data_dir: str | os.PathLike[str]) -> bool:
    """Rewrite the warehouse's deliveries and delivery_attempts after a pass (when `clickledger run`
    has made a warehouse); False when there is none yet."""
    from pipeline import schemas
    from pipeline.forwarding.tables import build_delivery_tables
    from pipeline.runner import load_pipeline_config
    from pipeline.warehouse import write_tables

    directory = DataDir(data_dir).warehouse_dir
    if not (directory / DataDir.WAREHOUSE_DB_FILE).exists():
        return False
    deliveries, attempts = build_delivery_tables(data_dir, load_pipeline_config(data_dir))
    write_tables(directory, {"deliveries": schemas.validate("deliveries", deliveries),
                             "delivery_attempts": schemas.validate("delivery_attempts", attempts)})
    return True
