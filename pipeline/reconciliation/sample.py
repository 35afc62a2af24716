"""A SAMPLE partner statement, built from our own conversions with deliberate differences, so the
reconciliation notebook shows every outcome when no statement is loaded.

Each of our conversions draws a number in [0, 1) and gets the difference of the first bound
below which it falls (the bounds add up: 5% dropped, then 4%, 3% and 1% changed). The shares
are small enough that the statement mostly agrees, as a real one does (87% matched), and
large enough that at the demo's 300-750 conversions per partner even the rarest, 1%, shows in
a few rows of the notebook's tables.
"""

from __future__ import annotations

import random
import uuid
from datetime import date
from typing import Any

import polars as pl

from pipeline.reconciliation.outcomes import KEY
from pipeline.warehouse import Warehouse

DROPPED_BELOW = 0.05  # 5% left out of the statement: missing_theirs, the commonest real gap
AMOUNT_CHANGED_BELOW = 0.09  # the next 4% with another amount: amount_mismatch
STATUS_FLIPPED_BELOW = 0.12  # the next 3% with another status: status_mismatch
CURRENCY_CHANGED_BELOW = 0.13  # the next 1% in another currency: currency_mismatch, rare in practice
AMOUNT_CHANGES = (-5, -1, 1, 2, 10)  # added to a changed amount: cents-level and whole-unit gaps, both ways
STATUS_FLIPS = {"approved": "pending", "pending": "approved", "rejected": "approved"}
# Refusals after which a partner believes it reported a conversion we do not have (an unknown
# click id, a wrong or missing key, a wrong path): it bills them, so a statement lists them.
BILLED_REFUSALS = ("click_not_found", "invalid_api_key", "api_key_required", "not_found")
REFUSED_ROWS = 8  # at most this many refused postbacks (missing_ours with the refusal as the reason):
# enough to show several reasons, few enough to leave room in describe()'s first 20 unmatched rows
REFUSED_AMOUNT = "10.00"  # the amount of a refused postback that sent none
NEVER_RECEIVED_ROWS = 2  # made-up click ids nobody ever sent us: missing_ours, never_received
NEVER_RECEIVED_AMOUNTS = (5, 80)  # their amounts, uniform in this range (in the base currency)
# a changed currency is the first of these that is not the row's own: two, so one always differs
SWAPPED_CURRENCIES = ("EUR", "USD")
STATEMENT_SCHEMA = {"click_id": pl.String, "transaction_id": pl.String, "status": pl.String, "amount": pl.String,
                    "currency": pl.String, "date": pl.String}


class _SampleRows:
    """The statement's rows, each key listed once as a statement must (keys compared as
    read_statement reads them: trimmed; a row without a click id or transaction id is left out)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.listed: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self.listed)

    def add(self, click_id: str, transaction_id: str, status: str, amount: str, currency: str, day: date) -> None:
        key = (click_id.strip(), transaction_id.strip())
        if key[0] and key[1] and key not in self.listed:
            self.listed.add(key)
            self.rows.append({"click_id": click_id, "transaction_id": transaction_id, "status": status,
                              "amount": amount, "currency": currency, "date": day.isoformat()})

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=STATEMENT_SCHEMA)


def sample_statement(wh: Warehouse, partner: str, *, start: date | None = None, end: date | None = None,
                     seed: int = 1) -> pl.DataFrame:
    """A SAMPLE statement of `partner` (see the module docstring): our conversions in [start, end],
    some dropped, amounts, statuses and currencies changed, and rows we do not have (click ids of
    that partner's refused postbacks, and never-received ones). The same seed gives the same rows.

    Each (click_id, transaction_id) is listed once, as a statement must: a refused postback is
    listed once however often it was retried, and not at all when its key is among the
    partner's conversions (a refused try, then a recorded one).
    """
    rng = random.Random(seed)
    conversions = wh.scan("conversions").filter(pl.col("partner_id") == partner).collect().with_columns(
        pl.col("converted_at").dt.date().alias("date"))
    if start is not None:
        conversions = conversions.filter(pl.col("date") >= start)
    if end is not None:
        conversions = conversions.filter(pl.col("date") <= end)
    statement = _SampleRows()
    base = wh.base_currency
    for r in conversions.sort("seq").iter_rows(named=True):
        _add_with_a_difference(statement, r, rng)
    _add_refused(statement, wh, partner, start, end, base)
    last_day = end or (conversions["date"].max() if conversions.height else date.today())
    for _ in range(NEVER_RECEIVED_ROWS):
        click_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        statement.add(click_id, click_id, "approved", f"{rng.uniform(*NEVER_RECEIVED_AMOUNTS):.2f}", base, last_day)
    return statement.frame()


def _add_with_a_difference(statement: _SampleRows, conversion: dict[str, Any], rng: random.Random) -> None:
    """One of our conversions as the statement lists it: as it is, changed, or not at all."""
    roll = rng.random()
    if roll < DROPPED_BELOW:
        return
    status, amount, currency = conversion["status"], conversion["amount"], conversion["currency"]
    if roll < AMOUNT_CHANGED_BELOW:
        amount = amount + rng.choice(AMOUNT_CHANGES)
    elif roll < STATUS_FLIPPED_BELOW:
        status = STATUS_FLIPS[status]
    elif roll < CURRENCY_CHANGED_BELOW:
        currency = next(c for c in SWAPPED_CURRENCIES if c != currency)
    statement.add(conversion["click_id"], conversion["transaction_id"], status, str(max(amount, 0)), currency,
                  conversion["date"])


def _add_refused(statement: _SampleRows, wh: Warehouse, partner: str, start: date | None,
                 end: date | None, base: str) -> None:
    """Up to REFUSED_ROWS of the partner's billed refusals in [start, end], in log order; not a key
    the partner has a conversion of (even one dropped above or outside the period)."""
    recorded = {(c.strip(), t.strip()) for c, t in wh.scan("conversions").filter(pl.col("partner_id") == partner)
                .select(*KEY).collect().iter_rows()}
    refused = wh.scan("postback_issues").filter(
        (pl.coalesce("partner_id", "key_partner_id") == partner) & pl.col("click_id").is_not_null()
        & pl.col("error").is_in(list(BILLED_REFUSALS))).collect()
    if start is not None:
        refused = refused.filter(pl.col("received_at").dt.date() >= start)
    if end is not None:
        refused = refused.filter(pl.col("received_at").dt.date() <= end)
    wanted = len(statement) + REFUSED_ROWS
    # one row per refused postback (a postback may have several issues)
    for r in refused.sort("seq").unique("seq", keep="first", maintain_order=True).iter_rows(named=True):
        if len(statement) >= wanted:
            break
        transaction_id = r["transaction_id"] or r["click_id"]
        if (r["click_id"].strip(), transaction_id.strip()) not in recorded:
            statement.add(r["click_id"], transaction_id, "approved", str(r["amount"] or REFUSED_AMOUNT),
                          r["currency"] or base, r["received_at"].date())
