"""What one delivery says: its macros' values, URL-encoded where they land, the POST body,
the Standard Webhooks signature, and publisher URLs with their secrets masked for display.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

import orjson

from pipeline.conversions import money_text
from receiver.contract.config import CUSTOM_MACRO_PREFIX, FORWARD_MACROS
from receiver.contract.config_file import MACRO_IN_URL_RE, webhook_key

# query parameters of a publisher URL whose values are secrets (any case, `-` or `_` alike)
SECRET_PARAM_RE = re.compile(r"(?i)^(?:.*[-_])?(?:key|apikey|token|secret|password|passwd|pass|pwd|auth|"
                             r"signature|sig|hash|hmac)$")
KEEP_FROM = 10  # a secret this long keeps its first 4 characters when shown


def macro_text(value: Any) -> str:
    """A macro's value as it is written into a URL (before encoding): money exact, empty for none."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return money_text(value)  # 1.5 -> "1.50", never an exponent
    return str(value)


def render_url(template: str, values: dict[str, Any]) -> str:
    """`template` with each {macro} replaced by its value, percent-encoded (only RFC 3986's
    unreserved characters stay as they are, so a value can neither end a parameter nor add one,
    wherever in the URL it lands). A macro without a value (an unknown custom key) is empty."""
    return MACRO_IN_URL_RE.sub(lambda m: quote(macro_text(values.get(m[1])), safe="-._~"), template)


def macro_values(row: dict[str, Any], custom: dict[str, Any]) -> dict[str, Any]:
    """Every macro's value for one delivery: `row` holds the FORWARD_MACROS' values (None when
    unknown), `custom` the click's custom_data (also `{sub1}`..`{sub5}` when sent on the click)."""
    values = {name: row.get(name) for name in FORWARD_MACROS}
    for i in range(1, 6):
        name = f"sub{i}"
        if values.get(name) is None and custom.get(name) is not None:
            values[name] = custom[name]
    for key, value in custom.items():
        values[f"{CUSTOM_MACRO_PREFIX}{key}"] = value if not isinstance(value, list) else ",".join(map(str, value))
    return values


def post_body(values: dict[str, Any]) -> bytes:
    """A POST delivery's JSON body: every macro's value (points an integer, money exact text)."""
    def plain(value: Any) -> Any:
        if value is None or isinstance(value, int | bool):
            return value
        return macro_text(value)

    return orjson.dumps({name: plain(value) for name, value in values.items()}, option=orjson.OPT_SORT_KEYS)


def sign(secret: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` header: v1, HMAC-SHA256 of
    `{webhook-id}.{webhook-timestamp}.{body}` with the secret's decoded key, base64."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def mask_value(value: str) -> str:
    """A secret cut for display: its first 4 characters and an ellipsis (nothing of a short one)."""
    if not value or MACRO_IN_URL_RE.fullmatch(value):
        return value  # nothing, or a macro: no secret
    return (value[:4] if len(value) >= KEEP_FROM else "") + "…"


def mask_url(url: str | None) -> str | None:
    """A publisher URL for tables and notebooks: user:password and the values of secret-looking
    query parameters (key, token, secret, sig, ...) cut by mask_value."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "…@" + netloc.rsplit("@", 1)[1]

    def pair(m: re.Match[str]) -> str:
        name = unquote_plus(m[2])
        return f"{m[1]}{m[2]}={mask_value(m[3]) if SECRET_PARAM_RE.match(name) else m[3]}"

    query = re.sub(r"(^|&)([^=&]*)=([^&]*)", pair, parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
