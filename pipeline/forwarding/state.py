"""Each delivery's state, folded from the delivery log's records (pipeline.forwarding.ledger).

    pending    planned or reopened, not attempted yet (or waiting for the event before it)
    delivered  an attempt got a 2xx
    failed     the last attempt failed; the next one is at next_attempt_at
    exhausted  the schedule is over (forward --resend / --replay to try again)
    stopped    its endpoint answered 410 Gone (a resend or replay reopens it)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver.contract.timeutil import parse_utc

STATES = ("pending", "delivered", "failed", "exhausted", "stopped")
INTERRUPTED = "interrupted: the forwarder stopped during this attempt (retried with the same delivery id)"


@dataclass
class Attempt:
    number: int
    started_at: datetime
    finished_at: datetime | None = None
    http_status: int | None = None
    error: str | None = None
    outcome: str = "interrupted"  # delivered | failed | exhausted | stopped | interrupted
    next_attempt_at: datetime | None = None
    duration_ms: int | None = None


@dataclass
class Delivery:
    planned: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "pending"
    next_attempt_at: datetime | None = None
    in_schedule: int = 0  # attempts since it was planned or last reopened
    delivered_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.planned["delivery_id"]

    @property
    def endpoint_key(self) -> tuple[str, str]:
        return self.planned["affiliate"], self.planned["endpoint_id"]

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass
class Deliveries:
    by_id: dict[str, Delivery]
    stopped_endpoints: dict[tuple[str, str], dict[str, Any]]  # (affiliate, endpoint id) -> its stop record

    def blocked_by(self, delivery: Delivery) -> Delivery | None:
        """The delivery of the conversion's previous event to the same endpoint, while it is not delivered."""
        before = delivery.planned.get("after")
        previous = self.by_id.get(before) if before else None
        return previous if previous is not None and previous.state != "delivered" else None

    def due(self, now: datetime) -> list[Delivery]:
        """What to attempt now: pending or failed, its time come, its endpoint not stopped, and
        the conversion's previous event to that endpoint delivered (events go in order)."""
        return [d for d in self.by_id.values()
                if d.state in ("pending", "failed") and d.next_attempt_at is not None and d.next_attempt_at <= now
                and d.endpoint_key not in self.stopped_endpoints and self.blocked_by(d) is None]


def fold(records: list[dict[str, Any]]) -> Deliveries:
    by_id: dict[str, Delivery] = {}
    stopped: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        kind = record["kind"]
        if kind == "stop_endpoint":
            stopped[(record["affiliate"], record["endpoint_id"])] = record
            continue
        delivery = by_id.get(record["delivery_id"])
        if kind == "planned":
            if delivery is None:
                by_id[record["delivery_id"]] = Delivery(record, next_attempt_at=parse_utc(record["planned_at"]))
            continue
        if delivery is None:
            continue  # an attempt of a delivery the log does not plan: nothing to fold it into
        if kind == "attempt":
            delivery.attempts.append(Attempt(int(record["attempt"]), parse_utc(record["started_at"])))
            delivery.in_schedule += 1
            # until its outcome: retried at once if the forwarder stopped here
            delivery.next_attempt_at = parse_utc(record["started_at"])
        elif kind == "outcome":
            attempt = next((a for a in reversed(delivery.attempts) if a.number == int(record["attempt"])), None)
            if attempt is None:
                continue
            attempt.finished_at = parse_utc(record["finished_at"])
            attempt.http_status = record.get("http_status")
            attempt.error = record.get("error")
            attempt.outcome = record["state"]
            attempt.duration_ms = record.get("duration_ms")
            nxt = record.get("next_attempt_at")
            attempt.next_attempt_at = parse_utc(nxt) if nxt else None
            delivery.state = record["state"]
            delivery.next_attempt_at = attempt.next_attempt_at
            if record["state"] == "delivered":
                delivery.delivered_at = attempt.finished_at
        elif kind == "reopen":
            delivery.state, delivery.in_schedule = "pending", 0
            delivery.next_attempt_at = parse_utc(record["at"])
            stopped.pop(delivery.endpoint_key, None)
    for delivery in by_id.values():
        last = delivery.last
        if last is not None and last.finished_at is None:
            last.error = INTERRUPTED
            if delivery.state in ("delivered", "exhausted"):  # an attempt after a reopen, cut short
                delivery.state = "failed"
        if delivery.state not in ("delivered",) and delivery.endpoint_key in stopped:
            delivery.state = "stopped"
    return Deliveries(by_id, stopped)
