"""Postback parameter values the receiver decides on: amounts and currencies.

The vocabulary (which names mean what, statuses, macros) and the reading of parameters
from a request are the contract's (receiver.contract.params), shared with the pipeline;
this module holds what only the receiver's decisions need: turning a sent amount or
currency into the exact value a record keeps, or refusing it.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any

from receiver.contract.params import ParamError
from receiver.contract.profiles import AmountFormat

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


# What may group thousands: with a decimal point, commas (1,234.50); with a decimal comma, dots
# (1.234,50); either way spaces, no-break spaces and apostrophes (1 234,50, 1'234.50).
_GROUPS = {False: ", \u00a0\u202f'", True: ". \u00a0\u202f'"}
_SIGNS = "+-\u2212"  # \u2212: the minus sign some locales write


def parse_profile_amount(raw: Any, amounts: AmountFormat, code: str, what: str) -> tuple[str, bool]:
    """(the amount's absolute value as an exact decimal string, whether it was negative), read
    as the partner's profile says its platform writes amounts: a decimal comma, thousands
    separators, a leading currency symbol. Anything else is refused, never guessed: with
    thousands separators the groups must be of three digits, so "1,5" is not read as 15."""
    if isinstance(raw, bool) or raw is None or isinstance(raw, dict | list):
        raise ParamError(code, f"{what} must be a number, got {raw!r}")
    text = str(raw).strip()
    sent = text[:40]
    negative = False
    if text[:1] in _SIGNS:
        negative, text = text[0] != "+", text[1:].lstrip()
    if amounts.currency_symbol and text[:1] and unicodedata.category(text[0]) == "Sc":
        text = text[1:].lstrip()
        if text[:1] in _SIGNS and not negative:  # $-1.50
            negative, text = text[0] != "+", text[1:].lstrip()
    decimal = "," if amounts.decimal_comma else "."
    if amounts.thousands_separator:
        groups = "".join(re.escape(c) for c in _GROUPS[amounts.decimal_comma])
        match = re.fullmatch(rf"(\d{{1,3}})(?:([{groups}])\d{{3}}(?:\2\d{{3}})*)?(?:{re.escape(decimal)}(\d+))?|"
                             rf"(\d+)(?:{re.escape(decimal)}(\d+))?", text)
        if match is None:
            raise ParamError(code, f"{what} must be a number written as this partner's profile says "
                                   f"({_describe(amounts)}), got {sent!r}")
        whole = re.sub(r"\D", "", text.split(decimal)[0]) if decimal in text else re.sub(r"\D", "", text)
        fraction = text.rsplit(decimal, 1)[1] if decimal in text else ""
        text = whole + (f".{fraction}" if fraction else "")
    elif amounts.decimal_comma:
        if "." in text or text.count(",") > 1:
            raise ParamError(code, f"{what} must be a number with a decimal comma and no thousands separator "
                                   f"({_describe(amounts)}), got {sent!r}")
        text = text.replace(",", ".")
    if text[:1] in _SIGNS:  # a second sign ("--1", "-$-1") is junk, not a double negation
        raise ParamError(code, f"{what} must be a number, got {sent!r}")
    return parse_amount(text, code, what), negative


def _describe(amounts: AmountFormat) -> str:
    parts = ["decimal comma" if amounts.decimal_comma else "decimal point"]
    if amounts.thousands_separator:
        parts.append("thousands in groups of three")
    if amounts.currency_symbol:
        parts.append("a leading currency symbol")
    return ", ".join(parts)
