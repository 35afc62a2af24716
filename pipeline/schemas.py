"""pandera schemas of every table, checked where each table is materialised.

Column descriptions name units and time zones. Money is `Decimal(38, 8)` (wallet
amounts `Decimal(38, 2)`), timestamps are `Datetime("us", "UTC")`, days are UTC
dates unless a column says otherwise. `validate(name, frame)` turns pandera's lazy
SchemaErrors into one message naming the table, the column, the check and a few
failing values. pandera 0.35 checks the dtype of List columns
(`status_history: list[str]`) but runs no value checks inside lists.
"""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from pipeline.errors import SchemaValidationError

Money = Annotated[pl.Decimal, 38, 8]
Cents = Annotated[pl.Decimal, 38, 2]
Rate = Annotated[pl.Decimal, 38, 10]
UtcTime = Annotated[pl.Datetime, "us", "UTC"]

# `unknown`: a value a profile partner's [partners.statuses] does not map (never counted)
STATUSES = ["approved", "pending", "rejected", "test", "unknown"]
CURRENCY_RE = r"^[A-Z]{3}$"


class _Base(pa.DataFrameModel):
    class Config:
        strict = True  # an unexpected column is a bug in the derivation, not a feature
        coerce = False  # the derivation must produce the right dtypes itself


class FxRates(_Base):
    date: pl.Date = pa.Field(description="the day the rate applies from (UTC)")
    currency: str = pa.Field(str_matches=CURRENCY_RE, description="ISO 4217 code")
    rate: Rate = pa.Field(gt=0, description="units of base currency for one unit of `currency`, 10 places")

    class Config:
        unique = ["date", "currency"]


class Clicks(_Base):
    click_id: str = pa.Field(unique=True, description="UUID v4 the receiver generated")
    clicked_at: UtcTime = pa.Field(description="when the click request arrived, UTC, microseconds")
    source: str = pa.Field(isin=["link", "earn"], description="tracking link (seed 003) or earn-app task (seed 000)")
    slug: str = pa.Field(nullable=True, description="tracking link slug (links only)")
    product_id: str = pa.Field(nullable=True, description="earn product (earn clicks only)")
    offer_id: str = pa.Field(description="offer the click is for")
    partner_id: str = pa.Field(description="partner owning the offer")
    affiliate_id: str = pa.Field(nullable=True, description="affiliate of the link (links only)")
    user_id: str = pa.Field(nullable=True, description="app user (earn clicks only)")
    ip: str = pa.Field(nullable=True, description="client address as the server saw it (remote_addr)")
    forwarded_for: str = pa.Field(nullable=True, description="X-Forwarded-For header, unparsed")
    user_agent: str = pa.Field(nullable=True)
    referer: str = pa.Field(nullable=True)
    expires_at: UtcTime = pa.Field(nullable=True, description="click expiry, UTC; null = never expires")
    custom_data: str = pa.Field(nullable=True, description="unrecognised parameters as a JSON object text, keys sorted")
    task_url: str = pa.Field(nullable=True, description="earn task URL")
    redirect_url: str = pa.Field(nullable=True)
    offer_currency: str = pa.Field(nullable=True, str_matches=CURRENCY_RE,
                                   description="offer currency at click time (snapshot; config fallback)")
    revenue_share_percent: Money = pa.Field(nullable=True, ge=0, le=100,
                                            description="percent of the amount paid on (snapshot at click time)")
    revenue_share_fixed: Money = pa.Field(nullable=True, ge=0,
                                          description="fixed payout in the offer currency (snapshot at click time)")
    terms_source: str = pa.Field(nullable=True, isin=["snapshot", "config"],
                                 description="where offer currency and revenue share came from")
    event_id: str = pa.Field(description="log record of the click")
    seq: int = pa.Field(description="log position of the click")


class Postbacks(_Base):
    event_id: str = pa.Field(unique=True, description="UUID of the log record")
    seq: int = pa.Field(unique=True, description="log position (append order)")
    received_at: UtcTime = pa.Field(description="when the postback arrived, UTC, microseconds")
    route: str = pa.Field(nullable=True, description="route template, e.g. /api/postback")
    method: str = pa.Field(nullable=True)
    dialect: str = pa.Field(nullable=True, description="network | publisher | peerclick | advertiser | earn | "
                            "profile (a partner with a profile, on its own /postback/{key})")
    preset: str = pa.Field(nullable=True, description="the profile partner's preset (keitaro, tapjoy...)")
    click_id: str = pa.Field(nullable=True, description="click id as sent (any alias), null when empty")
    transaction_id: str = pa.Field(nullable=True, description="transaction id; defaults to the click id")
    transaction_id_source: str = pa.Field(nullable=True, description="param | default")
    status_raw: str = pa.Field(nullable=True, description="status as sent; null when absent")
    status: str = pa.Field(nullable=True, isin=STATUSES, description="normalised status; for a profile partner "
                           "mapped from status_raw with its [partners.statuses] of this run (unknown: a value "
                           "the mapping does not know); a reversal is rejected")
    reversal: bool = pa.Field(nullable=True, description="a profile's reversal: it takes back the conversion of "
                              "its (click_id, transaction_id)")
    reversal_transaction_id: str = pa.Field(nullable=True, description="a reversal's own transaction id as sent")
    reversal_amount: Money = pa.Field(nullable=True, ge=0, description="the amount a reversal takes back, in "
                                      "`currency`")
    amount: Money = pa.Field(nullable=True, ge=0, description="amount (or payout) in `currency`")
    commission: Money = pa.Field(nullable=True, ge=0, description="commission in `currency`")
    commission_sent: bool = pa.Field(nullable=True, description="whether a commission parameter was sent")
    amount_sent: bool = pa.Field(nullable=True, description="whether an amount (or payout) parameter was sent; "
                                 "a missing one is recorded as 0")
    currency: str = pa.Field(nullable=True, str_matches=CURRENCY_RE, description="ISO 4217 code of the amounts")
    currency_source: str = pa.Field(nullable=True, description="param | offer | default (the base currency)")
    partner_id: str = pa.Field(nullable=True, description="partner of the click, else of the api key")
    offer_id: str = pa.Field(nullable=True, description="offer of the click")
    affiliate_id: str = pa.Field(nullable=True)
    user_id: str = pa.Field(nullable=True)
    product_id: str = pa.Field(nullable=True)
    click_source: str = pa.Field(nullable=True, description="link | earn")
    campaign_id: str = pa.Field(nullable=True, description="ClickWall campaign id (advertiser dialect)")
    sent_user_id: str = pa.Field(nullable=True, description="the platform's own user id (a profile's user_id)")
    sent_offer_id: str = pa.Field(nullable=True, description="the platform's own offer id (a profile's offer_id)")
    survey_id: str = pa.Field(nullable=True, description="the platform's survey id (a profile's survey_id)")
    key_present: bool = pa.Field(nullable=True)
    key_source: str = pa.Field(nullable=True, description="path | header | param")
    key_partner_id: str = pa.Field(nullable=True, description="partner the api key belongs to")
    client_ip: str = pa.Field(nullable=True, description="address the postback was judged by for the partner's "
                              "allowed_ips: remote_addr, or the right-most X-Forwarded-For entry that is not a "
                              "trusted proxy when remote_addr is one")
    signature_present: bool = pa.Field(nullable=True, description="whether an X-Signature header came "
                                       "(null: a request refused before it was read)")
    status_updates: bool = pa.Field(nullable=True, description="the partner's status_updates setting then")
    custom_data: str = pa.Field(nullable=True, description="unrecognised parameters, JSON object text")
    http_status: int = pa.Field(nullable=True, description="the HTTP status we answered")
    result: str = pa.Field(description="recorded | duplicate | test | the error code")
    error: str = pa.Field(nullable=True, description="the error code we answered, null on success")


class Conversions(_Base):
    click_id: str = pa.Field()
    transaction_id: str = pa.Field()
    converted_at: UtcTime = pa.Field(description="arrival of the recorded postback, UTC, microseconds")
    status: str = pa.Field(isin=STATUSES, description="current status after allowed updates")
    status_raw: str = pa.Field(nullable=True, description="raw status of the postback that set `status`")
    status_history: pl.List(pl.String) = pa.Field(description="every status step, oldest first")
    status_updated_at: UtcTime = pa.Field(description="when `status` was set, UTC")
    counts: bool = pa.Field(description="approved, known unexpired click, and every needed fx rate present")
    not_counted_reason: str = pa.Field(nullable=True, description="why counts is false (pending, rejected, "
                                       "unknown_status, click_unknown, click_expired, no_offer_terms, "
                                       "fx_missing); null when it counts")
    amount: Money = pa.Field(ge=0, description="amount in `currency`")
    commission: Money = pa.Field(ge=0, description="commission sent, in `currency` (0 when none)")
    commission_sent: bool = pa.Field(nullable=True)
    currency: str = pa.Field(str_matches=CURRENCY_RE, description="currency of amount and commission")
    fx_rate: Rate = pa.Field(nullable=True, gt=0, description="base units per unit of `currency`; null = no rate")
    fx_date: pl.Date = pa.Field(nullable=True, description="UTC day of the rate used")
    amount_base: Money = pa.Field(nullable=True, ge=0, description="amount in base currency, half-even, 8 places")
    commission_base: Money = pa.Field(nullable=True, ge=0, description="commission in base currency")
    affiliate_payout: Money = pa.Field(nullable=True, ge=0,
                                       description="affiliate or user share in affiliate_payout_currency")
    affiliate_payout_currency: str = pa.Field(nullable=True, str_matches=CURRENCY_RE)
    affiliate_payout_source: str = pa.Field(nullable=True, isin=["commission", "percent", "fixed"])
    affiliate_payout_base: Money = pa.Field(nullable=True, ge=0, description="the share in base currency")
    base_currency: str = pa.Field(str_matches=CURRENCY_RE)
    partner_id: str = pa.Field(nullable=True)
    offer_id: str = pa.Field(nullable=True)
    affiliate_id: str = pa.Field(nullable=True)
    user_id: str = pa.Field(nullable=True)
    product_id: str = pa.Field(nullable=True)
    click_source: str = pa.Field(nullable=True, description="link | earn")
    survey_id: str = pa.Field(nullable=True, description="the partner's survey id as sent: a profile's survey_id, "
                              "else the survey_id parameter, else a profile's offer_id, else the offer_id "
                              "parameter (seed 001); null when none was sent")
    campaign_id: str = pa.Field(nullable=True, description="our offer (campaign) the survey id maps to by the "
                                "partner's [[survey_campaigns]] at this run; null when unmapped or no survey id")
    campaign_match: str = pa.Field(nullable=True, isin=["exact", "pattern", "default", "unmapped"],
                                   description="how survey_id mapped: exact, pattern, default, or unmapped "
                                   "(postback_issues: unmapped_survey); null when the partner maps no survey "
                                   "ids or none was sent")
    clicked_at: UtcTime = pa.Field(nullable=True, description="UTC; null when the click is unknown")
    expires_at: UtcTime = pa.Field(nullable=True, description="click expiry, UTC; null = never")
    dialect: str = pa.Field(nullable=True)
    duplicates: int = pa.Field(ge=0, description="later postbacks for the pair (ignored or applied as updates)")
    updates_applied: int = pa.Field(ge=0, description="later postbacks that changed the status")
    conflicting_duplicates: int = pa.Field(ge=0, description="later postbacks for the pair whose amount, currency "
                                           "or commission differs from the recorded one (postback_issues: "
                                           "conflicting_duplicate); the recorded values are kept")
    event_id: str = pa.Field(description="log record of the recorded postback")
    seq: int = pa.Field(description="log position of the recorded postback")
    last_event_id: str = pa.Field(description="log record that set the current status")
    last_seq: int = pa.Field(description="log position that set the current status")

    class Config:
        unique = ["click_id", "transaction_id"]


class Earnings(_Base):
    day: pl.Date = pa.Field(description="UTC day of converted_at")
    partner_id: str = pa.Field(nullable=True)
    offer_id: str = pa.Field(nullable=True)
    affiliate_id: str = pa.Field(nullable=True, description="affiliate (links); null for earn users")
    user_id: str = pa.Field(nullable=True, description="app user (earn); null for affiliates")
    base_currency: str = pa.Field(str_matches=CURRENCY_RE)
    counted: int = pa.Field(ge=0, description="conversions that count")
    amount_base: Money = pa.Field(ge=0, description="sum of counted amounts, base currency")
    affiliate_payout_base: Money = pa.Field(ge=0, description="sum of counted shares, base currency")
    margin_base: Money = pa.Field(description="amount_base - affiliate_payout_base, base currency")
    pending: int = pa.Field(ge=0, description="pending conversions")
    rejected: int = pa.Field(ge=0, description="rejected conversions (incl. values the seed dialects do not "
                             "know; a profile's unknown status is neither pending nor rejected, and never counted)")
    approved_not_counted: int = pa.Field(ge=0, description="approved but expired, unknown click or fx missing")


class PostbackIssues(_Base):
    event_id: str = pa.Field(description="log record of the request (one row per issue: a request may have "
                             "several, e.g. an amount_not_recognised and a repeated_parameter)")
    seq: int = pa.Field()
    received_at: UtcTime = pa.Field(description="UTC, microseconds")
    kind: str = pa.Field(isin=["postback", "unrouted", "http_error"],
                         description="postback, unrouted (a wrong path), or http_error (refused by the HTTP "
                                     "server before any route)")
    route: str = pa.Field(nullable=True)
    path: str = pa.Field(nullable=True)
    method: str = pa.Field(nullable=True)
    dialect: str = pa.Field(nullable=True)
    click_id: str = pa.Field(nullable=True)
    transaction_id: str = pa.Field(nullable=True)
    partner_id: str = pa.Field(nullable=True, description="partner of the click, else of the key")
    offer_id: str = pa.Field(nullable=True)
    key_partner_id: str = pa.Field(nullable=True)
    campaign_id: str = pa.Field(nullable=True)
    status_raw: str = pa.Field(nullable=True)
    amount: Money = pa.Field(nullable=True)
    currency: str = pa.Field(nullable=True)
    http_status: int = pa.Field(nullable=True)
    result: str = pa.Field(nullable=True)
    error: str = pa.Field(nullable=True)
    reason: str = pa.Field(description="what support can act on (see docs/pipeline.md, postback_issues)")
    nearest_click_id: str = pa.Field(nullable=True, description="a known click id close to the one sent")
    detail: str = pa.Field(description="one sentence for support")

    class Config:
        unique = ["event_id", "reason"]


class WalletCredits(_Base):
    entry_id: str = pa.Field(unique=True, description="deterministic: hash of kind + click_id + transaction_id")
    batch_id: str = pa.Field()
    credited_at: UtcTime = pa.Field(description="batch time, UTC")
    kind: str = pa.Field(isin=["credit", "debit"])
    user_id: str = pa.Field()
    click_id: str = pa.Field()
    transaction_id: str = pa.Field()
    amount: Cents = pa.Field(ge=0, description="base currency, half-even to cents")
    signed_amount: Cents = pa.Field(description="+amount for credits, -amount for debits")
    currency: str = pa.Field(str_matches=CURRENCY_RE)
    event_id: str = pa.Field(description="log record it traces to (recorded postback, or the reversal)")
    seq: int = pa.Field(description="log position it traces to")
    running_balance: Cents = pa.Field(description="the user's balance after this entry, ledger order")
    ledger_line: int = pa.Field(ge=1, description="line in DATA/ledger/wallet_credits.ndjson")


class WalletBalances(_Base):
    user_id: str = pa.Field(unique=True)
    currency: str = pa.Field(str_matches=CURRENCY_RE)
    credited: Cents = pa.Field(ge=0)
    debited: Cents = pa.Field(ge=0)
    balance: Cents = pa.Field()
    entries: int = pa.Field(ge=0)
    last_entry_at: UtcTime = pa.Field(nullable=True)


DELIVERY_STATES = ["pending", "delivered", "failed", "exhausted", "stopped"]
FORWARD_EVENTS = ["pending", "approved", "rejected", "reversed"]


class Deliveries(_Base):
    delivery_id: str = pa.Field(unique=True, description="stable hash of (conversion, event, endpoint); the "
                                "webhook-id header of every attempt")
    click_id: str = pa.Field(description="the conversion's click id")
    transaction_id: str = pa.Field(description="the conversion's transaction id")
    event: str = pa.Field(isin=FORWARD_EVENTS, description="what the publisher is told")
    affiliate: str = pa.Field(description="the publisher ([[affiliates]] id)")
    endpoint: str = pa.Field(description="the endpoint's URL template, secrets masked")
    endpoint_id: str = pa.Field(description="hash of the endpoint's method and URL template")
    method: str = pa.Field(isin=["GET", "POST"])
    url: str = pa.Field(description="the URL sent, secrets masked")
    points: int = pa.Field(nullable=True, description="points credited (approved, > 0), taken back (reversed, "
                           "< 0) or previewed (pending); null without points_per_unit")
    attempts: int = pa.Field(ge=0, description="attempts so far")
    last_http_status: int = pa.Field(nullable=True, description="HTTP status of the last attempt; null when none "
                                     "or no answer")
    last_error: str = pa.Field(nullable=True, description="why the last attempt failed (or waits)")
    state: str = pa.Field(isin=DELIVERY_STATES, description="pending | delivered | failed | exhausted | stopped")
    next_attempt_at: UtcTime = pa.Field(nullable=True, description="when it is attempted next, UTC; null when "
                                        "delivered, exhausted or stopped")
    planned_at: UtcTime = pa.Field(description="when the forwarder planned it, UTC")
    delivered_at: UtcTime = pa.Field(nullable=True, description="when a 2xx came back, UTC")
    step_at: UtcTime = pa.Field(description="when the status step it tells was recorded, UTC")
    step_seq: int = pa.Field(description="log position of that status step")


class DeliveryAttempts(_Base):
    delivery_id: str = pa.Field()
    attempt: int = pa.Field(ge=1, description="1, 2, ... in the delivery's life (resends continue the count)")
    click_id: str = pa.Field()
    transaction_id: str = pa.Field()
    event: str = pa.Field(isin=FORWARD_EVENTS)
    affiliate: str = pa.Field()
    endpoint: str = pa.Field(description="URL template, secrets masked")
    started_at: UtcTime = pa.Field(description="intent recorded, just before sending, UTC")
    finished_at: UtcTime = pa.Field(nullable=True, description="answer or error, UTC; null when interrupted")
    duration_ms: int = pa.Field(nullable=True, ge=0)
    http_status: int = pa.Field(nullable=True, description="null: no answer (timeout, reset, refused...)")
    error: str = pa.Field(nullable=True, description="why it failed; null on success")
    outcome: str = pa.Field(isin=["delivered", "failed", "exhausted", "stopped", "interrupted"])
    next_attempt_at: UtcTime = pa.Field(nullable=True, description="the next attempt it scheduled, UTC")

    class Config:
        unique = ["delivery_id", "attempt"]


SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "clicks": Clicks,
    "postbacks": Postbacks,
    "conversions": Conversions,
    "earnings": Earnings,
    "postback_issues": PostbackIssues,
    "wallet_credits": WalletCredits,
    "wallet_balances": WalletBalances,
    "fx_rates": FxRates,
    "deliveries": Deliveries,
    "delivery_attempts": DeliveryAttempts,
}


def polars_schema(name: str) -> dict[str, pl.DataType]:
    """The exact Polars dtypes of a table, for building empty frames."""
    schema = SCHEMAS[name].to_schema()
    return {col: c.dtype.type for col, c in schema.columns.items()}


def empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=polars_schema(name))


def validate(name: str, frame: pl.DataFrame, *, examples: int = 3) -> pl.DataFrame:
    """Check `frame` against table `name`'s schema; raise SchemaValidationError with a readable message."""
    model = SCHEMAS[name]
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise SchemaValidationError(name, describe_failures(name, exc.failure_cases, examples),
                                    exc.failure_cases) from None
    except pa.errors.SchemaError as exc:  # non-lazy path, kept for safety
        raise SchemaValidationError(name, f"table {name}: {exc}") from None
    return frame


def describe_failures(name: str, cases: pl.DataFrame, examples: int = 3) -> str:
    lines = [f"table {name} does not match its schema:"]
    if not isinstance(cases, pl.DataFrame) or cases.is_empty():
        return lines[0] + " (no failure cases reported)"
    grouped = (cases.with_columns(pl.col("failure_case").cast(pl.String))
               .group_by(["column", "check"], maintain_order=True)
               .agg(pl.len().alias("n"), pl.col("failure_case").head(examples).alias("values")))
    for row in grouped.iter_rows(named=True):
        column = row["column"] or "(table)"
        check = str(row["check"])
        values = ", ".join(repr(v) for v in row["values"] if v is not None)
        if check.startswith("dtype("):
            lines.append(f"  column {column}: has dtype {values}, expected {check[6:-1]}")
        elif check == "column_in_dataframe":
            lines.append(f"  missing column(s): {values}")
        elif check == "column_in_schema":
            lines.append(f"  column(s) not in the schema: {values}")
        else:
            lines.append(f"  column {column}: check {check} failed for {row['n']} row(s), e.g. {values}")
    return "\n".join(lines)
