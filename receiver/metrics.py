"""`GET /metrics`: what operations watch, in the Prometheus text format (prometheus_client).

Each app has its own `CollectorRegistry` (never the library's global one), so several apps
in one process (tests) keep separate counts. Counted as they happen: requests by route and
status, 503 answers by reason, and per group commit of the log its records and its
fdatasync time (histograms). Read at each scrape: the worker queue, open connections and
what the slow-client guard closed (once a server is attached: `attach_server`), the log's
bytes and segments, the click and conversion indexes, config reloads and refused reloads,
and the requests that could not be logged.

/metrics itself is not traffic: it writes no log record and is not counted in the
requests; it answers only clients within the config's `metrics_allowed_ips` (the client
address as the postback allowlist sees it, so through a trusted proxy the real client's).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receiver.contract.framing import segment_paths

if TYPE_CHECKING:
    from receiver.app import Receiver
    from receiver.connections import GuardCounts

CONTENT_TYPE = CONTENT_TYPE_LATEST

# fdatasync on a local SSD takes ~0.1-2 ms; on a busy or network disk, tens of ms to seconds.
FDATASYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0)
# Records per group commit: 1 when idle, up to about the number of worker threads under load.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ReceiverMetrics:
    """The metrics of one app (see the module's docstring)."""

    def __init__(self, receiver: Receiver) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("clickledger_requests", "Requests answered, by route and HTTP status "
                                "(route: the route template; unrouted: no route; http_error: refused by "
                                "waitress before the app)", ["route", "status"], registry=self.registry)
        self.unavailable = Counter("clickledger_unavailable_responses", "503 answers, by error code "
                                   "(log_unavailable: the record could not be made durable; overloaded: "
                                   "the worker queue was full)", ["error"], registry=self.registry)
        self.fdatasync = Histogram("clickledger_log_fdatasync_seconds", "Time of each fdatasync of the log "
                                   "(one per group commit)", buckets=FDATASYNC_BUCKETS, registry=self.registry)
        self.batch = Histogram("clickledger_log_batch_records", "Records written and synced together by one "
                               "group commit", buckets=BATCH_BUCKETS, registry=self.registry)
        self.metrics_refused = Counter("clickledger_metrics_refused", "/metrics requests refused: the client is "
                                       "not within metrics_allowed_ips", registry=self.registry)
        self._server: Any = None
        self._guard_counts: GuardCounts | None = None
        self.registry.register(_ScrapeTimeCollector(receiver, self))

    def count_request(self, route: str | None, status: int, error: str | None) -> None:
        self.requests.labels(route or "unrouted", str(status)).inc()
        if status == 503:
            self.unavailable.labels(error or "unknown").inc()

    def observe_batch(self, records: int, fdatasync_seconds: float) -> None:
        """Called by the log writer after each group commit (receiver.log.SegmentWriter.on_batch)."""
        self.batch.observe(records)
        self.fdatasync.observe(fdatasync_seconds)

    def attach_server(self, server: Any, guard_counts: GuardCounts | None = None) -> None:
        """The waitress server whose open connections (and guard's closings) the metrics show."""
        self._server = server
        self._guard_counts = guard_counts

    def open_connections(self) -> int | None:
        channels = getattr(self._server, "active_channels", None)
        return None if channels is None else len(channels)

    def guard_counts(self) -> dict[str, int] | None:
        return None if self._guard_counts is None else self._guard_counts.snapshot()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeTimeCollector(Collector):
    """What is read when Prometheus scrapes, rather than counted as it happens."""

    def __init__(self, receiver: Receiver, metrics: ReceiverMetrics) -> None:
        self.receiver = receiver
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        receiver = self.receiver
        depth: Callable[[], int] | None = receiver.queue_depth
        if depth is not None:
            yield GaugeMetricFamily("clickledger_worker_queue_depth", "Requests waiting for a worker thread",
                                    value=depth())
        connections = self.metrics.open_connections()
        if connections is not None:
            yield GaugeMetricFamily("clickledger_open_connections", "Client connections open in the server",
                                    value=connections)
        closed = self.metrics.guard_counts()
        if closed is not None:
            family = CounterMetricFamily("clickledger_slow_connections_closed", "Connections closed before a "
                                         "whole request head arrived, by measure (head_timeout, shed, "
                                         "per_address: receiver/connections.py)", labels=["reason"])
            for reason, count in closed.items():
                family.add_metric([reason], count)
            yield family
        sizes = []
        for path in segment_paths(receiver.settings.log_dir):
            try:
                sizes.append(os.stat(path).st_size)
            except OSError:  # rotated away between listing and stat: not there any more
                continue
        yield GaugeMetricFamily("clickledger_log_bytes", "Bytes in the log's segments", value=sum(sizes))
        yield GaugeMetricFamily("clickledger_log_segments", "Segments in the log", value=len(sizes))
        yield GaugeMetricFamily("clickledger_click_index_size", "Clicks in the receiver's click index",
                                value=len(receiver.clicks))
        yield GaugeMetricFamily("clickledger_conversion_index_size",
                                "Conversions in the receiver's duplicate-check index", value=len(receiver.conversions))
        store = receiver.config_store
        yield CounterMetricFamily("clickledger_config_reloads", "Edits of config.toml read and put in service",
                                  value=store.reloads)
        yield CounterMetricFamily("clickledger_config_refused_reloads", "Edits of config.toml refused as invalid "
                                  "(the last good config kept serving)", value=store.refused_reloads)
        yield GaugeMetricFamily("clickledger_config_error", "1 while the last edit of config.toml is refused",
                                value=1 if store.error else 0)
        family = CounterMetricFamily("clickledger_unlogged_requests", "Requests that never became a log record "
                                     "(never received whole, or abandoned by their client)", labels=["reason"])
        for reason, count in receiver.unlogged.snapshot().items():
            family.add_metric([reason], count)
        yield family
        yield GaugeMetricFamily("clickledger_log_writable", "1 while the last write of the log succeeded",
                                value=1 if receiver.writer.healthy else 0)
