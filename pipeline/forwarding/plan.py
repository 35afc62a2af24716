"""Which deliveries exist: one per (conversion, event, endpoint), derived from the conversions
and their status history exactly as the pipeline derives them (pipeline.conversions), and the
points each carries.

Events of a conversion, from its status steps in log order:

- `pending`: a step to pending;
- `approved`: a step to approved, told only when the approval counts (a known, unexpired click
  with offer terms and fx rates: `not_counted_reason` of `approved` is null);
- `reversed`: a step to rejected after a told approval;
- `rejected`: a step to rejected of a conversion never told as approved.

Points (an affiliate with `points_per_unit`) are computed once, when an approval is first
planned: the share in base currency (affiliate_payout_base) times points_per_unit, rounded
half-to-even to an integer, and credited in the points ledger (pipeline.forwarding.points). A
reversal debits exactly the credited points, read from that ledger, never recomputed. A pending
delivery carries what the approval would be worth at that moment (nothing is credited).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson
import polars as pl

from pipeline.conversions import KEY, PairHistory, not_counted_reason
from pipeline.forwarding.render import macro_values, mask_url, post_body, render_url
from receiver.contract.config import Config, PublisherPostback
from receiver.contract.timeutil import format_utc

DELIVERY_PREFIX = "dlv_"


def delivery_id(click_id: str, transaction_id: str, event: str, affiliate: str, endpoint_id: str) -> str:
    """The one id a (conversion, event, endpoint) delivery ever has: the same on every run,
    restart and rebuild, and the Standard Webhooks `webhook-id` of each of its attempts."""
    text = "\x1f".join((click_id, transaction_id, event, affiliate, endpoint_id))
    return DELIVERY_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


def points_for(payout_base: Decimal, points_per_unit: Decimal) -> int:
    """The points of a payout in base currency: payout x points_per_unit, half-to-even."""
    return int((payout_base * points_per_unit).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def points_entry_id(kind: str, affiliate: str, click_id: str, transaction_id: str) -> str:
    return hashlib.sha256(f"points-{kind}\x1f{affiliate}\x1f{click_id}\x1f{transaction_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ConversionEvent:
    click_id: str
    transaction_id: str
    event: str
    status: str
    seq: int  # the log position of the status step
    at: datetime  # when that step's postback was recorded, UTC


def publisher_of(row: dict[str, Any]) -> str | None:
    """Whom a conversion is forwarded to: its affiliate (tracking links), else its earn product."""
    return row.get("affiliate_id") or row.get("product_id")


def conversion_events(conversions: pl.DataFrame, history: PairHistory) -> dict[tuple[str, str], list[ConversionEvent]]:
    """Each conversion's events in log order (see the module docstring), by (click_id, transaction_id)."""
    approval = conversions.select(*KEY, not_counted_reason(pl.lit("approved")).is_null().alias("approval_counts"))
    counts = {(r[0], r[1]): r[2] for r in approval.iter_rows()}
    steps = (history.steps.filter(pl.col("is_recorded") | pl.col("applied"))
             .select(*KEY, "seq", "received_at", "status").sort("seq"))
    events: dict[tuple[str, str], list[ConversionEvent]] = {}
    told_approved: set[tuple[str, str]] = set()
    for click_id, transaction_id, seq, at, status in steps.iter_rows():
        key = (click_id, transaction_id)
        if key not in counts:
            continue
        if status == "pending":
            event = "pending"
        elif status == "approved":
            if not counts[key]:
                continue
            event = "approved"
            told_approved.add(key)
        elif status == "rejected":
            event = "reversed" if key in told_approved else "rejected"
        else:
            continue  # unknown and test statuses are nothing to tell
        events.setdefault(key, []).append(ConversionEvent(click_id, transaction_id, event, status, seq, at))
    return events


@dataclass
class Plan:
    """What a planning pass adds: new delivery records and new points ledger entries."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)


def _custom_data(clicks: pl.DataFrame) -> dict[str, dict[str, Any]]:
    rows = clicks.filter(pl.col("custom_data").is_not_null()).select("click_id", "custom_data").iter_rows()
    out = {}
    for click_id, text in rows:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out[click_id] = value
    return out


def plan_deliveries(config: Config, conversions: pl.DataFrame, history: PairHistory, clicks: pl.DataFrame, *,
                    known: set[str], points_ledger: list[dict[str, Any]], now: datetime,
                    since: datetime | None = None) -> Plan:
    """The deliveries and points entries not yet in `known` (delivery ids) and `points_ledger`.
    `since`: only events recorded at or after it (a replay's range)."""
    plan = Plan()
    if not config.affiliates or conversions.is_empty():
        return plan
    by_key = {(r["click_id"], r["transaction_id"]): r for r in conversions.iter_rows(named=True)
              if publisher_of(r) in config.affiliates}
    if not by_key:
        return plan
    customs = _custom_data(clicks)
    ledger = {e["entry_id"]: e for e in points_ledger}
    when = format_utc(now)
    for key, events in conversion_events(conversions, history).items():
        row = by_key.get(key)
        if row is None:
            continue
        affiliate = config.affiliates[publisher_of(row)]
        custom = customs.get(row["click_id"], {})
        previous: dict[str, str] = {}  # endpoint id -> the delivery of the conversion's last event it is told
        for event in events:
            points = _points(affiliate.id, affiliate.points_per_unit, row, event, ledger, plan, when)
            for endpoint in affiliate.postbacks:
                if event.event not in endpoint.events:
                    continue
                ident = delivery_id(row["click_id"], row["transaction_id"], event.event, affiliate.id,
                                    endpoint.endpoint_id)
                after = previous.get(endpoint.endpoint_id)
                previous[endpoint.endpoint_id] = ident
                if ident in known or (since is not None and event.at < since):
                    continue
                plan.deliveries.append(_delivery(ident, row, event, affiliate.id, endpoint, points, custom,
                                                 after, when))
                known.add(ident)
    return plan


def _points(affiliate: str, per_unit: Decimal | None, row: dict[str, Any], event: ConversionEvent,
            ledger: dict[str, dict[str, Any]], plan: Plan, when: str) -> int | None:
    """The points of this event: the credited points (approved), the same taken back (reversed),
    a preview (pending), none (rejected, or an affiliate without points_per_unit)."""
    if per_unit is None or event.event == "rejected":
        return None
    credit_id = points_entry_id("credit", affiliate, row["click_id"], row["transaction_id"])
    if event.event == "pending":
        payout = row["affiliate_payout_base"]
        return points_for(payout, per_unit) if payout is not None else None
    if event.event == "approved":
        if credit_id not in ledger:
            points = points_for(row["affiliate_payout_base"], per_unit)
            entry = _points_entry("credit", affiliate, row, event, points, when,
                                  payout_base=row["affiliate_payout_base"], per_unit=per_unit)
            ledger[credit_id] = entry
            plan.points.append(entry)
        return int(ledger[credit_id]["points"])
    credit = ledger.get(credit_id)
    if credit is None:
        return None
    debit_id = points_entry_id("debit", affiliate, row["click_id"], row["transaction_id"])
    if debit_id not in ledger:
        entry = _points_entry("debit", affiliate, row, event, int(credit["points"]), when,
                              payout_base=Decimal(credit["payout_base"]), per_unit=Decimal(credit["points_per_unit"]))
        ledger[debit_id] = entry
        plan.points.append(entry)
    return -int(ledger[debit_id]["points"])


def _points_entry(kind: str, affiliate: str, row: dict[str, Any], event: ConversionEvent, points: int, when: str,
                  *, payout_base: Decimal, per_unit: Decimal) -> dict[str, Any]:
    return {"entry_id": points_entry_id(kind, affiliate, row["click_id"], row["transaction_id"]),
            "recorded_at": when, "kind": kind, "affiliate": affiliate, "user_id": row.get("user_id"),
            "click_id": row["click_id"], "transaction_id": row["transaction_id"], "points": points,
            "payout_base": str(payout_base), "points_per_unit": str(per_unit), "seq": event.seq}


def _delivery(ident: str, row: dict[str, Any], event: ConversionEvent, affiliate: str, endpoint: PublisherPostback,
              points: int | None, custom: dict[str, Any], after: str | None, when: str) -> dict[str, Any]:
    values = macro_values({
        "click_id": row["click_id"], "transaction_id": row["transaction_id"], "status": event.status,
        "event": event.event, "payout": row["affiliate_payout"], "payout_base": row["affiliate_payout_base"],
        "currency": row["affiliate_payout_currency"], "points": points, "offer_id": row.get("offer_id"),
        "campaign_id": row.get("campaign_id"), "user_id": row.get("user_id"), "delivery_id": ident,
    }, custom)
    return {
        "kind": "planned", "delivery_id": ident, "planned_at": when, "click_id": row["click_id"],
        "transaction_id": row["transaction_id"], "event": event.event, "status": event.status,
        "affiliate": affiliate, "endpoint_id": endpoint.endpoint_id, "endpoint": mask_url(endpoint.url),
        "method": endpoint.method, "url": render_url(endpoint.url, values),
        "body": post_body(values).decode() if endpoint.method == "POST" else "",
        "points": points, "step_seq": event.seq, "step_at": format_utc(event.at), "after": after,
    }
