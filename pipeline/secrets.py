"""API keys in derived data: where a logged request can carry one, and its fingerprint in its place.

The log keeps every request as it was received, keys included (docs/log-format.md: guard it
like config.toml). Everything derived from it is staged first, and staging masks the raw
members it keeps (`mask_column`, `mask_json`), so the staging cache, every table, the
notebooks and CSV exports hold a key only as `[key:<fingerprint>]`: the first 12 hex digits
of its SHA-256 (receiver.contract.config.key_fingerprint), which for a partner's api key is
the postback's `key_fingerprint`. Support can still tell keys apart and match them to a
partner; no derived file gives one away. The click story's view of the raw log masks the
same way (`pipeline.story.for_support`).

Where a key is recognised (the rule, also in docs/guarantees.md), whatever the partner and
whether or not the key is configured:
- the path segment after a segment holding `postback` (`/postback/{key}`, `/postback/KEY/extra`,
  a misspelt `/postbacks/KEY`), but our own routes' words (`/postback/advertiser`);
- the value of a parameter, JSON member or header whose name is secret-like (`is_secret_name`):
  in a query string, a form or text body, custom_data, a JSON body, a URL (the Referer), and
  the request line and header lines of a request the HTTP server refused.
An empty value and an unfilled macro (`{api_key}`) are no secret, and stay as they are.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import orjson
import polars as pl

from receiver.contract.config import key_digest, key_fingerprint
from receiver.contract.params import DIALECTS, MACRO_RE

# A name is secret-like when, percent-decoded, lower-cased and with `-`, `.` and spaces read as
# `_`, it is one of SECRET_NAMES, ends with one of SECRET_ENDINGS or holds one of SECRET_WORDS.
SECRET_NAMES = frozenset({"key", "sig", "hash", "auth", "authorization", "pwd", "verifier", "cookie"})
SECRET_ENDINGS = ("api_key", "apikey", "access_key", "secret_key", "private_key", "auth_key")
SECRET_WORDS = ("secret", "token", "password", "passwd", "signature")
# literal segments our own postback routes have after a postback segment: not keys
ROUTE_WORDS = frozenset(part for route in DIALECTS for prev, part in zip(route.split("/"), route.split("/")[1:],
                                                                         strict=False)
                        if "postback" in prev and not part.startswith("{"))

_PAIR = re.compile(r"(^|[?&;])([^=&;?#\s]*)=([^&;#\s]*)")
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
# a member whose value is a string, a flat list or a scalar: an object or a list of them is gone
# into, so a secret nested at any depth is found on its own
_JSON_MEMBER = re.compile(rf'({_JSON_STRING})(\s*:\s*)({_JSON_STRING}|\[[^\[\]{{}}]*\]|[^\s,{{}}\[\]]+)')
_PATH_KEY = re.compile(r"(?i)(/[^/?#&\s]*postback[^/?#&\s]*/)([^/?#&\s]+)")
_HEADER_LINE = re.compile(r"(^|\\x0d\\x0a|\r\n|\n)([!#$%&'*+.^_`|~0-9A-Za-z-]+)(:[ \t]*)((?:(?!\\x0d\\x0a|\r|\n).)*)")
_AUTH_SCHEME = re.compile(r"(?i)^(bearer|basic|token|digest|apikey)(\s+)(.*)$")
# What may hold a key in a query string, path or URL, found column-wise (Rust regex, as Polars
# runs it): a pair whose name could be secret-like (or is percent-encoded), a postback path
# segment with what follows it, and a pair whose value is a percent-encoded URL or query string. Each distinct match is masked by `mask_secrets`.
_CANDIDATES = (r"(?i)(?:^|[?&;])[^=&;?#/\s]*(?:key|secret|token|pass|pwd|sig|auth|hash|verifier|cookie|%)"
               r"[^=&;?#/\s]*=[^&;#\s]*|/[^/?#&\s]*postback[^/?#&\s]*/[^/?#&\s]+"
               r"|(?:^|[?&;])[^=&;?#\s]*=[^&;#\s]*(?:postback|%3D)[^&;#\s]*")
_STEMS = r"(?i)key|secret|token|pass|pwd|sig|auth|hash|verifier|cookie|%|postback"  # in every candidate


def normalised_name(name: str) -> str:
    return re.sub(r"[-. ]", "_", unquote_plus(name).strip().lower())


def is_secret_name(name: str) -> bool:
    """Whether a parameter, JSON member or header of this name carries a secret (see the module doc)."""
    normal = normalised_name(name)
    return normal in SECRET_NAMES or normal.endswith(SECRET_ENDINGS) or any(w in normal for w in SECRET_WORDS)


def masked(value: str) -> str:
    """What stands for a secret in derived data: `[key:<fingerprint>]`, the fingerprint of the value
    as the receiver reads it (trimmed). Nothing sent, or an unfilled macro, stays as it is: it is no
    secret, and it is what support has to see."""
    secret = value.strip()
    if not secret or MACRO_RE.fullmatch(secret) or (secret.startswith("[key:") and secret.endswith("]")):
        return value
    return f"[key:{key_fingerprint(key_digest(secret))}]"


def mask_secrets(text: str | None, *, path_decoded: bool = False) -> str | None:
    """A raw query, body, path, URL or JSON text with every secret in its place (see the module doc)
    replaced by `masked`: `api_key=` (any secret-like name, any case, percent-encoded or not)
    parameters, such JSON members, and the key in a `/postback/KEY` path. `path_decoded`: the
    text is a path already percent-decoded (a record's `path`), so its key is read as it stands."""
    if not text:
        return text

    def pair(m: re.Match[str]) -> str:
        if is_secret_name(m[2]):
            return f"{m[1]}{m[2]}={_mask_encoded(m[3], unquote_plus)}"
        decoded = unquote_plus(m[3]) if "%" in m[3] else m[3]
        if decoded == m[3]:
            return m[0]
        inner = mask_secrets(decoded)  # a percent-encoded URL or query string as the value
        return m[0] if inner == decoded else f"{m[1]}{m[2]}={quote(inner or '', safe=':/[]')}"

    def member(m: re.Match[str]) -> str:
        try:
            name = orjson.loads(m[1])
        except orjson.JSONDecodeError:
            return m[0]
        if not isinstance(name, str) or not is_secret_name(name):
            return m[0]
        return f"{m[1]}{m[2]}{_mask_json_text(m[3])}"

    def segment(m: re.Match[str]) -> str:
        key = m[2] if path_decoded else unquote(m[2])
        return m[1] + (m[2] if m[2].lower() in ROUTE_WORDS else _mask_encoded(m[2], lambda _: key))

    return _PATH_KEY.sub(segment, _JSON_MEMBER.sub(member, _PAIR.sub(pair, text)))


def _mask_encoded(raw: str, decode: Any) -> str:
    """A secret as sent (percent-encoded or not): its mask, or itself when it is no secret."""
    shown = masked(decode(raw))
    return raw if shown == decode(raw) else shown


def _mask_json_text(value: str) -> str:
    """A JSON member's value text (a string, a list of them, or a scalar) with each secret masked."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return f'"{masked(value)}"'
    if isinstance(parsed, list):
        return orjson.dumps([_mask_value(item) for item in parsed]).decode()
    shown = _mask_value(parsed)
    return value if shown == parsed else orjson.dumps(shown).decode()


def _mask_value(value: Any) -> Any:
    """A secret-named member's value: a string or number masked, a list or object member by member."""
    if isinstance(value, list):
        return [_mask_value(item) for item in value]
    if isinstance(value, dict):
        return {name: _mask_value(item) for name, item in value.items()}
    if value is None or isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else str(value)
    shown = masked(text)
    return value if shown == text else shown


def mask_json(value: Any) -> Any:
    """A parsed JSON value (custom_data) with every secret masked: the value of each secret-named
    member at any depth, and keys inside any string (a URL, a query string) by `mask_secrets`."""
    if isinstance(value, dict):
        return {name: _mask_value(item) if is_secret_name(name) else mask_json(item) for name, item in value.items()}
    if isinstance(value, list):
        return [mask_json(item) for item in value]
    if isinstance(value, str) and value:
        return mask_secrets(value)
    return value


def mask_headers(text: str | None) -> str | None:
    """Header lines (an http_error record's `headers`, escaped or not): the value of a secret-like
    header (X-API-Key, Authorization, X-Signature, Cookie...) masked, and keys in any other value
    (a Referer URL) by `mask_secrets`."""
    if not text:
        return text

    def line(m: re.Match[str]) -> str:
        value = m[4]
        if is_secret_name(m[2]):
            scheme = _AUTH_SCHEME.match(value)
            value = scheme[1] + scheme[2] + masked(scheme[3]) if scheme else masked(value)
        else:
            value = mask_secrets(value) or value
        return f"{m[1]}{m[2]}{m[3]}{value}"

    return _HEADER_LINE.sub(line, text)


def mask_column(column: pl.Series, *, path_decoded: bool = False) -> pl.Series:
    """A column of query strings, paths or URLs with every secret masked (`mask_secrets`).

    Column-wise, for millions of rows: the places a key may stand are found by a regex in
    Polars, each distinct one is masked once in Python, and the column is rewritten with all
    of them in one pass (longest first, so a key that begins another is never cut short).
    """
    maybe = column.str.contains(_STEMS).fill_null(False)  # a cheap first pass: most rows of many logs
    if not maybe.any():
        return column
    some = column.filter(maybe)
    found = some.str.extract_all(_CANDIDATES).explode().drop_nulls().unique().to_list()
    mapping = {}
    for text in found:
        shown = mask_secrets(text, path_decoded=path_decoded)
        if shown != text:
            mapping[text] = shown
    if not mapping:
        return column
    patterns = sorted(mapping, key=len, reverse=True)
    return column.scatter(maybe.arg_true(),
                          some.str.replace_many(patterns, [mapping[p] for p in patterns], leftmost=True))


def mask_distinct(column: pl.Series, mask: Any) -> pl.Series:
    """A column of few distinct values (header lines, request lines) masked value by value."""
    values = column.drop_nulls().unique().to_list()
    mapping = {v: shown for v in values if (shown := mask(v)) != v}
    if not mapping:
        return column
    return column.replace(list(mapping), list(mapping.values()))
