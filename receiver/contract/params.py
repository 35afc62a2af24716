"""The parameter vocabulary: how a request's parameters are read, and what they mean.

Parameters are read identically from the query string, a form body or a JSON body (the
query string wins when both carry a name). Every parameter that is not recognised is kept,
unchanged, in a record's custom_data. The receiver decides with these rules, and the
pipeline reads a logged request again with the same ones (and the same status vocabulary),
so the receiver's answer and the derived tables never disagree on what a parameter or a
status means.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson

# route template -> dialect (the seed system it serves): a postback record's `route` and
# `fields.dialect`
DIALECTS = {
    "/api/postback": "network",  # seed 003: partner tracking-link guide
    "/postback/{key}": "publisher",  # seed 001: key in the path
    "/postback": "peerclick",  # seed 002: cid, payout, txid, paramN, eventN
    "/postback/advertiser": "advertiser",  # seed 004: ClickWall, campaign_id
    "/api/v1/earn/postback": "earn",  # seed 000: earn app, JSON body
}

# Recognised names, in priority order: the first one present wins.
CLICK_ID = ("click_id", "cid", "clickid", "clickId")
API_KEY = ("api_key",)
STATUS = ("status",)
AMOUNT = ("amount", "payout")
COMMISSION = ("commission",)
CURRENCY = ("currency",)
TRANSACTION_ID = ("transaction_id", "txn", "order_id", "txid", "transactionId")
CAMPAIGN_ID = ("campaign_id",)

BASE_VOCABULARY: dict[str, tuple[str, ...]] = {
    "click_id": CLICK_ID,
    "api_key": API_KEY,
    "status": STATUS,
    "amount": AMOUNT,
    "commission": COMMISSION,
    "currency": CURRENCY,
    "transaction_id": TRANSACTION_ID,
}
# Seed 004 (ClickWall): campaign_id is part of the contract only on its route.
ADVERTISER_VOCABULARY = {**BASE_VOCABULARY, "campaign_id": CAMPAIGN_ID}


def vocabulary_for(dialect: str | None) -> dict[str, tuple[str, ...]]:
    """The parameters a dialect recognises."""
    return ADVERTISER_VOCABULARY if dialect == "advertiser" else BASE_VOCABULARY


APPROVED = ("confirmed", "approved", "paid", "completed", "success", "1")
PENDING = ("pending", "hold", "on_hold")
REJECTED = ("rejected", "declined", "reversed", "chargeback", "refunded", "fraud")
STATUS_MAP: dict[str, str] = {
    **{s: "approved" for s in APPROVED},
    **{s: "pending" for s in PENDING},
    **{s: "rejected" for s in REJECTED},
    "test": "test",
}

# orjson reads JSON 1024 levels deep but writes only 255: a deeper body could never be logged
# (its record would fail to encode), so it is refused as invalid_body, and logged raw.
MAX_JSON_DEPTH = 64

# Unfilled macros as trackers leave them: {click_id}, %7Bclick_id%7D, [click_id], ${click_id}, #click_id#, <click_id>...
MACRO_RE = re.compile(
    r"(\{\{?[^{}]*\}\}?|%7B[^%]*%7D|\[[^\[\]]*\]|\$\{[^}]*\}|#[A-Za-z_][\w.-]*#|<[A-Za-z_][\w.-]*>|__[A-Z_]+__)",
    re.IGNORECASE,
)


class ParamError(ValueError):
    """A parameter value that cannot be used; `code` is the answer's error code."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def normalise_status(raw: str | None) -> str:
    """approved | pending | rejected | test; an unknown status counts as rejected (kept raw elsewhere)."""
    if raw is None or raw.strip() == "":
        return "approved"
    return STATUS_MAP.get(raw.strip().lower(), "rejected")


def looks_like_macro(value: str) -> bool:
    return bool(MACRO_RE.search(value))


# Every click id we issue is a UUID; case is not what tells a partner's id apart from ours.
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def click_id_shape(value: str | None) -> str:
    """What a click id we did not find looks like: "empty", "macro" (a tracker macro left
    unfilled), "malformed" (not a UUID, so never one of ours) or "uuid" (well formed, but
    not one we issued).

    The receiver words its click_not_found message from this, and the pipeline its
    postback_issues reason, so the partner hears the same diagnosis from both.
    """
    if value is None or not value.strip():
        return "empty"
    if looks_like_macro(value):
        return "macro"
    return "uuid" if _UUID_RE.fullmatch(value.strip()) else "malformed"


def _as_text(value: Any) -> str | None:
    """A recognised parameter's value as text; JSON numbers become their decimal text."""
    if type(value) is str:  # nearly always: query and form values
        return value.strip()
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return value.strip()
    return orjson.dumps(value).decode()


def parse_query(query: str) -> list[tuple[str, str]]:
    """Pairs of a raw query string (as WSGI gives it, latin-1 of the bytes), decoded as UTF-8."""
    if query.isascii() and "%" not in query and "+" not in query:
        # Nothing to decode (the usual postback): the same pairs parse_qsl gives, without its cost.
        return [(name, value) for piece in query.split("&") if piece
                for name, _, value in (piece.partition("="),)]
    raw = query.encode("latin-1", "replace").decode("utf-8", "replace")
    return parse_qsl(raw, keep_blank_values=True, errors="replace")


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Parameters of a form or JSON body; other bodies carry none (they are still logged raw)."""
    if not body:
        return {}
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json") or (not media and body.lstrip()[:1] == b"{"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParamError("invalid_body", f"the JSON body does not parse: {exc}") from None
        if not isinstance(data, dict):
            raise ParamError("invalid_body", "the JSON body must be an object of parameters")
        if _json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParamError("invalid_body", f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
        return data
    if media == "application/x-www-form-urlencoded" or (not media and b"=" in body):
        return _first_wins(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return {}


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` objects/arrays deep (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _first_wins(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out


def merge_params(query_pairs: list[tuple[str, str]], body_params: dict[str, Any]) -> dict[str, Any]:
    """Query string first, then body parameters the query does not carry."""
    merged = _first_wins(query_pairs)
    for name, value in body_params.items():
        merged.setdefault(name, value)
    return merged


def split_params(params: dict[str, Any], vocabulary: dict[str, tuple[str, ...]]
                 ) -> tuple[dict[str, str | None], dict[str, Any]]:
    """(recognised fields by canonical name, custom_data of everything else).

    Only the alias that supplies a field is consumed; a second alias of the same
    field stays in custom_data so a conflicting value is never silently lost.
    """
    fields: dict[str, str | None] = dict.fromkeys(vocabulary)
    consumed: list[str] = []
    for canonical, aliases in vocabulary.items():
        for alias in aliases:
            if alias in params:
                fields[canonical] = _as_text(params[alias])
                consumed.append(alias)
                break
    if not consumed:
        return fields, dict(params)
    custom = {k: v for k, v in params.items() if k not in consumed}
    return fields, custom


def find_click_id(params: dict[str, Any]) -> str | None:
    for alias in CLICK_ID:
        if alias in params:
            return _as_text(params[alias])
    return None
