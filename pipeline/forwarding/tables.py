"""The tables deliveries and delivery_attempts, folded from the delivery log (read only: the
pipeline builds them while a forwarder may be appending)."""

from __future__ import annotations

import os

import polars as pl

from pipeline.forwarding.ledger import read_delivery_log
from pipeline.forwarding.render import mask_url
from pipeline.forwarding.state import fold
from pipeline.schemas import polars_schema
from receiver.contract.config import Config
from receiver.contract.datadir import DataDir
from receiver.contract.timeutil import parse_utc

ENDPOINT_GONE = "its endpoint is no longer in config.toml: nothing more is sent (put it back to resume)"


def build_delivery_tables(data_dir: str | os.PathLike[str], config: Config | None = None
                          ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(deliveries, delivery_attempts), in delivery log order. With `config`, a delivery still to
    send whose endpoint is no longer configured says so in last_error."""
    records, _ = read_delivery_log(DataDir(data_dir).deliveries_path)
    state = fold(records)
    configured = None if config is None else {
        (a.id, p.endpoint_id) for a in config.affiliates.values() for p in a.postbacks}
    deliveries, attempts = [], []
    for d in state.by_id.values():
        p = d.planned
        last = d.last
        error = last.error if last else None
        blocker = state.blocked_by(d)
        if d.state in ("pending", "failed") and configured is not None and d.endpoint_key not in configured:
            error = ENDPOINT_GONE
        elif d.state == "pending" and blocker is not None:
            error = f"waits for {blocker.id} ({blocker.planned['event']}, {blocker.state}): events go in order"
        elif d.state == "stopped" and (stop := state.stopped_endpoints.get(d.endpoint_key)) and (
                last is None or last.http_status != 410):
            error = f"the endpoint answered 410 Gone to {stop['delivery_id']} at {stop['at']}"
        deliveries.append({
            "delivery_id": d.id, "click_id": p["click_id"], "transaction_id": p["transaction_id"],
            "event": p["event"], "affiliate": p["affiliate"], "endpoint": p["endpoint"],
            "endpoint_id": p["endpoint_id"], "method": p["method"], "url": mask_url(p["url"]),
            "points": p.get("points"), "attempts": len(d.attempts),
            "last_http_status": last.http_status if last else None, "last_error": error, "state": d.state,
            "next_attempt_at": d.next_attempt_at if d.state in ("pending", "failed") else None,
            "planned_at": parse_utc(p["planned_at"]), "delivered_at": d.delivered_at,
            "step_at": parse_utc(p["step_at"]), "step_seq": p["step_seq"],
        })
        for a in d.attempts:
            attempts.append({
                "delivery_id": d.id, "attempt": a.number, "click_id": p["click_id"],
                "transaction_id": p["transaction_id"], "event": p["event"], "affiliate": p["affiliate"],
                "endpoint": p["endpoint"], "started_at": a.started_at, "finished_at": a.finished_at,
                "duration_ms": a.duration_ms, "http_status": a.http_status, "error": a.error, "outcome": a.outcome,
                "next_attempt_at": a.next_attempt_at,
            })
    return _frame("deliveries", deliveries), _frame("delivery_attempts", attempts)


def _frame(name: str, rows: list[dict]) -> pl.DataFrame:
    schema = polars_schema(name)
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
