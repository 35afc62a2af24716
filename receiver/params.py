"""Postback parameter values the receiver decides on: amounts and currencies.

The vocabulary (which names mean what, statuses, macros) and the reading of parameters
from a request are the contract's (receiver.contract.params), shared with the pipeline;
this module holds what only the receiver's decisions need: turning a sent amount or
currency into the exact value a record keeps, or refusing it.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from receiver.contract.params import ParamError

MAX_DECIMALS = 8
MAX_AMOUNT = Decimal("1e12")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def parse_amount(raw: Any, code: str, what: str) -> str:
    """A money amount as an exact decimal string ("12.50"); refuses junk rather than guessing."""
    if isinstance(raw, bool) or raw is None or isinstance(raw, dict | list):
        raise ParamError(code, f"{what} must be a number, got {raw!r}")
    text = str(raw).strip()
    if _PLAIN_AMOUNT.fullmatch(text):
        return text  # already what format(Decimal(text), "f") gives; the usual postback
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ParamError(code, f"{what} must be a number, got {text[:40]!r}") from None
    if not number.is_finite() or number < 0 or number >= MAX_AMOUNT:
        raise ParamError(code, f"{what} must be a finite number from 0 to 1e12, got {text[:40]!r}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
        raise ParamError(code, f"{what} has more than {MAX_DECIMALS} decimal places: {text[:40]!r}")
    return format(number, "f")


# A plain decimal within range and precision, without leading zeros: its own canonical text.
_PLAIN_AMOUNT = re.compile(rf"(?:0|[1-9][0-9]{{0,11}})(?:\.[0-9]{{1,{MAX_DECIMALS}}})?", re.ASCII)


def parse_currency(raw: Any) -> str:
    text = str(raw).strip().upper()
    if not _CURRENCY_RE.match(text):
        raise ParamError("invalid_currency", f"currency must be a 3-letter ISO 4217 code, got {str(raw)[:20]!r}")
    return text
