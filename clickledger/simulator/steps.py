"""What a traffic plan is made of: planned requests (steps), who answers a click's postbacks
(targets), and the postback dialects with the receiver's route for each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.contract.params import DIALECTS as ROUTE_DIALECTS

CLICK = "\x00click\x00"  # stands for the click id of a step's click_slot until it is sent
EARN_POSTBACK = "\x00earn-postback\x00"  # the postback_url that the earn click's redirectUrl carried

# dialect -> the receiver's route for its postbacks. The plan walks the dialects in this
# order, drawing from its seeded generator as it goes: reordering them changes every plan.
DIALECT_PATHS: dict[str, str] = {dialect: route for route, dialect in ROUTE_DIALECTS.items()}
DIALECTS: tuple[str, ...] = tuple(DIALECT_PATHS)
KEYED_DIALECTS = ("network", "publisher")  # their seed documents put a key in every postback
RECORDED = frozenset({"recorded"})


@dataclass(frozen=True)
class Target:
    """Who answers for a click's postbacks and how: one partner, through one dialect."""

    dialect: str
    partner: str
    offer: str
    currency: str
    key: str | None  # the partner's plaintext key, when config.toml holds one
    key_required: bool
    status_updates: bool

    @property
    def sends_key(self) -> bool:
        return self.key is not None and (self.key_required or self.dialect in KEYED_DIALECTS)


@dataclass(frozen=True)
class Step:
    """One planned request. CLICK in its path, query or body stands for a click id not yet known."""

    id: int
    phase: int
    kind: str  # health | click | track | postback
    dialect: str  # link | earn for clicks; the postback dialect for postbacks
    scenario: str
    expected: frozenset[str]  # the result or error codes this scenario should get
    method: str = "GET"
    path: str = "/"
    query: tuple[tuple[str, str], ...] = ()
    body: tuple[tuple[str, Any], ...] = ()
    body_format: str = ""  # "" | "form" | "json"
    headers: tuple[tuple[str, str], ...] = ()
    click_slot: int | None = None  # the click step whose id fills CLICK
    mutation: tuple[Any, ...] | None = None  # how that id is garbled before it is sent
    after: int | None = None  # a step that must have been sent first (duplicate, late)
    creates_click: bool = False
    currency: str | None = None  # the currency parameter sent, for the summary

    @property
    def variant(self) -> str:
        return f"{self.method} {self.body_format}".strip()


__all__ = ["CLICK", "DIALECTS", "DIALECT_PATHS", "EARN_POSTBACK", "KEYED_DIALECTS", "RECORDED",
           "Step", "Target"]
