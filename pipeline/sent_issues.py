"""postback_issues read from what a postback sent, so that nothing is booked wrong without a word.

- `amount_not_recognised`: an accepted postback that sent no amount parameter the receiver
  reads (so it was booked with amount 0), while one of its unrecognised parameters looks like
  money: its name holds a money word (`sum`, `revenue`, `payout_usd`, `eventRevenue`...) and its
  value reads as a number. The detail names the parameter and the config line to add it to.
- `unsubstituted_macro`: a field holding a tracker's macro left unfilled (receiver.contract.macros),
  in any postback, recorded or refused: the click id, the transaction id, the status, ClickWall's
  campaign id, a profile's user, offer and survey ids, and the field a refusal named (an amount).
- `repeated_parameter`: a name sent more than once with differing values (the receiver used the
  first; custom_data keeps them all, the record's `repeated_params` names them).

Each gives at most one row per postback and reason; the values are read once per distinct
text, and only on rows whose text can hold one (a vectorised filter first), so the usual
postback costs nothing here.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import polars as pl

from receiver.contract.config import Config
from receiver.contract.macros import find_macro
from receiver.contract.profiles import PROFILE_DIALECT
from receiver.contract.toml_lines import TomlLocator

AMOUNT_NOT_RECOGNISED = "amount_not_recognised"
UNSUBSTITUTED_MACRO = "unsubstituted_macro"
REPEATED_PARAMETER = "repeated_parameter"
ACCEPTED = ("recorded", "duplicate")

# A parameter name is money-looking when one of its words (split at anything but letters and
# digits, and between a lower-case letter and a capital: eventRevenue) is one of these.
MONEY_WORDS = frozenset({
    "sum", "revenue", "revenues", "rev", "payout", "payouts", "pay", "amount", "amt", "price", "value",
    "cost", "commission", "reward", "rewards", "earning", "earnings", "profit", "income", "total", "money",
    "cash", "currency", "sale", "sales",
})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# Any of the words inside a JSON text (a cheap vectorised filter before reading it).
_MONEY_HINT = "(?i)(" + "|".join(sorted(MONEY_WORDS, key=len, reverse=True)) + ")"
# A number as platforms write amounts: a sign, a currency symbol, digits grouped by . , or spaces.
_NUMBER = re.compile(r"[-+]?\s*[$€£¥₹]?\s*\d+(?:[.,\s']\d+)*\s*")

# The fields an accepted postback's record holds as sent, scanned for macros: column -> what support reads.
MACRO_COLUMNS = {"click_id": "click_id", "transaction_id": "transaction_id", "status_raw": "status",
                 "campaign_id": "campaign_id", "sent_user_id": "user_id", "sent_offer_id": "offer_id",
                 "survey_id": "survey_id"}
# A character every macro syntax needs: a value without any is not scanned (receiver.contract.macros).
_MACRO_HINT = r"[{}\[\]#%$@<>()]|__|REPLACE|OPTIONAL"


def money_words(name: str) -> bool:
    """Whether a parameter name holds a money word (sum, payout_usd, eventRevenue...)."""
    return any(word.lower() in MONEY_WORDS for word in _WORD_SPLIT.split(name) if word)


def number_text(value: Any) -> str | None:
    """The value as text when it reads as a number (a JSON number, or text such as 3.50, 1,5, $12),
    else None; of a repeated parameter's values, the first."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return value.strip()
    return None


def money_params(custom: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) of every money-looking parameter whose value reads as a number."""
    found = []
    for name, value in custom.items():
        if money_words(name) and (text := number_text(value)) is not None:
            found.append((name, text))
    return found


def partner_lines(config: Config | None, path: tuple[str, ...]) -> dict[str, tuple[str, int | None]]:
    """partner id -> (config file name, line of its key `path`, else of its [[partners]] entry)."""
    if config is None or config.path is None:
        return {}
    try:
        locate = TomlLocator(config.path.read_text(encoding="utf-8"))
    except OSError:
        return {}
    return {partner_id: (config.path.name, locate.line_of_path("partners", i, path))
            for i, partner_id in enumerate(config.partners)}


def _line(lines: dict[str, tuple[str, int | None]], partner_id: str | None) -> str:
    where = lines.get(partner_id or "")
    return f"{where[0]} line {where[1]}" if where and where[1] else "config.toml"


def _issues(rows: list[tuple[str, str]], reason: str) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={"event_id": pl.String, "own_detail": pl.String}, orient="row")
    return frame.with_columns(pl.lit(reason).alias("reason")).select("event_id", "reason", "own_detail")


def amounts_not_recognised(postbacks: pl.DataFrame, config: Config | None) -> pl.DataFrame:
    """(event_id, reason, own_detail) of every accepted postback booked without an amount while it
    sent a money-looking parameter the receiver did not read."""
    candidates = postbacks.filter(
        pl.col("result").is_in(ACCEPTED) & ~pl.col("amount_sent").fill_null(True)
        & ~pl.col("reversal").fill_null(False) & pl.col("custom_data").str.contains(_MONEY_HINT).fill_null(False)
    ).select("event_id", "custom_data", "dialect", pl.coalesce("key_partner_id", "partner_id").alias("_partner"))
    if candidates.is_empty():
        return _issues([], AMOUNT_NOT_RECOGNISED)
    lines = partner_lines(config, ("params", "amount"))
    found: dict[str, list[tuple[str, str]]] = {}
    rows = []
    for event_id, custom, dialect, partner in candidates.iter_rows():
        if custom not in found:
            data = orjson.loads(custom)
            found[custom] = money_params(data) if isinstance(data, dict) else []
        params = found[custom]
        if params:
            rows.append((event_id, _amount_text(params, dialect == PROFILE_DIALECT, partner, lines)))
    return _issues(rows, AMOUNT_NOT_RECOGNISED)


def _amount_text(params: list[tuple[str, str]], profile: bool, partner: str | None,
                 lines: dict[str, tuple[str, int | None]]) -> str:
    sent = ", ".join(f"{name} = {value!r}" for name, value in params)
    name = params[0][0]
    if profile:
        fix = (f"{_line(lines, partner)}: add \"{name}\" to partner {partner!r}'s [partners.params] amount = [...] "
               "so later postbacks read it")
    else:
        fix = (f"ask the partner to send it as amount (or payout), or give partner {partner!r} a profile with "
               f"[partners.params] amount = [\"{name}\"] and its own /postback/{{key}} URL")
    return (f"No amount parameter was read (booked as 0), but it sent {sent}: an amount under a name "
            f"this partner's parameters do not list. {fix}; the postbacks already booked keep 0 until the "
            "partner resends them or finance corrects them.")


def unfilled_macros(postbacks: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """(event_id, field, macro_text) of every field of a postback holding an unfilled macro: the
    field a refusal named (events' macro_field, macro_param, macro) and every field it holds as
    sent, each field once, in the order of MACRO_COLUMNS."""
    scanned = [c for c in MACRO_COLUMNS if c in postbacks.columns]
    own_txn = (pl.col("transaction_id_source") == "param").fill_null(False)  # else it is the click id
    values = postbacks.select(
        "event_id", *(pl.when(own_txn).then(pl.col(c)).otherwise(None).alias(c) if c == "transaction_id"
                      else pl.col(c) for c in scanned))
    values = values.filter(pl.any_horizontal(pl.col(c).str.contains(_MACRO_HINT).fill_null(False) for c in scanned))
    rows: list[tuple[str, str, str]] = []
    if "macro_field" in events.columns:
        refused = events.filter(pl.col("macro_field").is_not_null())
        for event_id, field, param, macro in refused.select("event_id", "macro_field", "macro_param",
                                                            "macro").iter_rows():
            rows.append((event_id, field, f"{field} (parameter {param!r}) is the unfilled macro {macro!r}"))
    named = {(event_id, field) for event_id, field, _ in rows}
    for row in values.iter_rows(named=True):
        for column in scanned:
            value = row[column]
            macro = find_macro(value) if value is not None else None
            field = MACRO_COLUMNS[column]
            if macro is None or (row["event_id"], field) in named:
                continue
            shown = repr(value) if value.strip() == macro else f"{value!r} (the macro {macro!r})"
            rows.append((row["event_id"], field, f"{field} is {shown}"))
    return pl.DataFrame(rows, schema={"event_id": pl.String, "field": pl.String, "macro_text": pl.String},
                        orient="row")


def repeated_parameters(postbacks: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """(event_id, reason, own_detail) of every postback that sent a name more than once with differing values."""
    if "repeated_params" not in events.columns:
        return _issues([], REPEATED_PARAMETER)
    repeated = events.filter(pl.col("repeated_params").is_not_null()).select("event_id", "repeated_params").join(
        postbacks.select("event_id", "custom_data"), on="event_id", how="inner")
    rows = []
    for event_id, names_text, custom_text in repeated.iter_rows():
        names = orjson.loads(names_text)
        custom = orjson.loads(custom_text) if custom_text else {}
        differing = []
        for name in names:
            values = custom.get(name)
            if isinstance(values, list) and len({orjson.dumps(v) for v in values}) > 1:
                differing.append((name, values))
        if differing:
            rows.append((event_id, _repeated_text(differing)))
    return _issues(rows, REPEATED_PARAMETER)


def _repeated_text(differing: list[tuple[str, list[Any]]]) -> str:
    parts = []
    for name, values in differing:
        shown = ", ".join(repr(v if isinstance(v, str) else orjson.dumps(v).decode()) for v in values[:5])
        more = f" and {len(values) - 5} more" if len(values) > 5 else ""
        parts.append(f"{name} was sent {len(values)} times with different values ({shown}{more}): the first, "
                     f"{values[0]!r}, was used")
    return "; ".join(parts) + ". Ask the partner which value is meant: its URL or form repeats the parameter."
