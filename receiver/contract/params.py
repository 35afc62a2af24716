"""The parameter vocabulary: how a request's parameters are read, and what they mean.

Parameters are read identically from the query string and from the body: a form, JSON,
`text/plain` holding a query string or JSON, or `multipart/form-data` fields, in the
charset its Content-Type names, after undoing a `Content-Encoding` of gzip or deflate
(`decode_body`). The query string wins when both carry a name. Every parameter that is not
recognised is kept, unchanged, in a record's custom_data; a name sent more than once (in the
query, or in the body) keeps its first value for deciding and every value, in order, in
custom_data. JSON numbers are
kept as the text they were sent as (`JSONNumber`), never rounded through a float. The
receiver decides with these rules, and the pipeline reads a logged request again with the
same ones (and the same status vocabulary), so the receiver's answer and the derived
tables never disagree on what a parameter or a status means.
"""

from __future__ import annotations

import codecs
import json
import re
import threading
import zlib
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

import orjson
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from receiver.contract.framing import JSONNumber
from receiver.contract.macros import find_macro
from receiver.contract.record import escape_bytes

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

# A whole value that is a bracketed name, as trackers leave unfilled macros: {click_id}, %7Bclick_id%7D,
# [click_id], ${click_id}, #click_id#, <click_id>... (the click story keeps such a value unmasked; every
# syntax platforms use is found by receiver.contract.macros.find_macro).
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
    """Whether `value` holds an unsubstituted macro, in any platform's syntax (receiver.contract.macros)."""
    return find_macro(value) is not None


# Every click id we issue is a UUID; case is not what tells a partner's id apart from ours.
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_RE = re.compile(UUID_PATTERN)


def normalise_click_id(click_id: str) -> str:
    """The click id a postback's id stands for: a UUID in any case is the lower-case UUID we
    issued (some trackers upper-case what they pass on); any other id is itself. The receiver
    looks clicks up and keys conversions by it, and the pipeline joins by it; the log keeps
    the id as sent."""
    if len(click_id) == 36 and not click_id.islower() and _UUID_RE.fullmatch(click_id):
        return click_id.lower()
    return click_id


def pair_key(click_id: str, transaction_id: str) -> tuple[str, str]:
    """A conversion's (click_id, transaction_id) as deduplicated: the click id normalised, and
    the transaction id too when it is the click id (a postback without one defaults to it)."""
    if len(click_id) != 36 or click_id.islower():  # any id we issued: itself (inlined: once per postback)
        return click_id, transaction_id
    canonical = normalise_click_id(click_id)
    return canonical, (canonical if transaction_id == click_id else transaction_id)


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


def param_text(value: Any) -> str | None:
    """A recognised parameter's value as text: JSON numbers as the text they were sent as
    (a `JSONNumber`), true and false as "1" and "0", objects and arrays as their JSON."""
    if type(value) is str:  # nearly always: query and form values
        return value.strip()
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):  # a JSONNumber among them: its text
        return str.strip(value)
    return orjson.dumps(value).decode()


_as_text = param_text


_SURROGATES = re.compile("[\ud800-\udfff]")


def exact_text(text: str) -> str:
    """A decoded parameter name or value as text that keeps the identity of the bytes sent.

    `text` was decoded with surrogateescape, so a byte that is not UTF-8 (or not of the body's
    charset) is a lone surrogate U+DC80-U+DCFF (a JSON body's `\\udcXX` escape reads the same).
    Valid text comes back as it is. Text with such a byte, or holding a backslash followed by
    `x` (which could read as an escape), comes back as `receiver.contract.record.escape_bytes`
    shows its bytes: `caf\\xe9` for `caf%E9`, `caf\\\\xe9` for the typed text `caf\\xe9`. So
    two different byte strings never give the same text: ids are compared, deduplicated and
    logged as the exact bytes sent, never folded into U+FFFD by a replacement.
    """
    if text.isascii():
        return text if "\\x" not in text else escape_bytes(text.encode("ascii"))
    if "\\x" not in text and not _SURROGATES.search(text):
        return text
    raw = bytearray()
    for char in text:
        point = ord(char)
        if 0xDC80 <= point <= 0xDCFF:
            raw.append(point - 0xDC00)  # the undecodable byte it stands for
        else:  # a lone surrogate of another range (a JSON escape) keeps its own UTF-8 bytes
            raw += char.encode("utf-8", "surrogatepass")
    return escape_bytes(bytes(raw))


def parse_query(query: str) -> list[tuple[str, str]]:
    """Pairs of a raw query string (as WSGI gives it, latin-1 of the bytes), decoded as UTF-8,
    each name and value as `exact_text` of its percent-decoded bytes."""
    if query.isascii() and "%" not in query and "+" not in query and "\\" not in query:
        # Nothing to decode (the usual postback): the same pairs parse_qsl gives, without its cost.
        return [(name, value) for piece in query.split("&") if piece
                for name, _, value in (piece.partition("="),)]
    raw = query.encode("latin-1", "replace").decode("utf-8", "surrogateescape")
    return [(exact_text(name), exact_text(value))
            for name, value in parse_qsl(raw, keep_blank_values=True, errors="surrogateescape")]


_NONE_REPEATED: Mapping[str, list[Any]] = MappingProxyType({})


class Params(dict):
    """A request's parameters: each name's first value (the one every decision uses), and in
    `repeated` every value, in order, of each name sent more than once: those go to
    custom_data as a list (`custom_data`, `split_params`). No __init__ of its own: made as
    fast as a dict, `repeated` set only when a name repeats."""

    repeated: Mapping[str, list[Any]] = _NONE_REPEATED


def _pairs_params(pairs: list[tuple[str, Any]]) -> Params:
    """Params of (name, value) pairs: the first value wins, every value of a repeated name kept."""
    out = Params()
    for name, value in pairs:
        out.setdefault(name, value)
    if len(out) != len(pairs):  # some name came more than once (rare): collect its values
        values: dict[str, list[Any]] = {}
        for name, value in pairs:
            values.setdefault(name, []).append(value)
        out.repeated = {name: every for name, every in values.items() if len(every) > 1}
    return out


# ---------------------------------------------------------------- bodies

# Content-Encoding codings a body may come in (RFC 9110 8.4.1); x-gzip is gzip's old name.
CONTENT_CODINGS = ("gzip", "x-gzip", "deflate", "identity")
MAX_DECODED_BODY_BYTES = 1024 * 1024  # the receiver's default body limit, also after decoding
MAX_MULTIPART_PARTS = 1000


def decode_body(body: bytes, content_encoding: str | None, limit: int = MAX_DECODED_BODY_BYTES) -> bytes:
    """The body with its Content-Encoding (gzip, deflate, or several, in the order applied) undone.

    The decoded body may be at most `limit` bytes: more (a decompression bomb among them) is
    ParamError("body_too_large"), found after decoding at most limit + 1 bytes, so a bomb
    costs no more memory than an honest body. A stream that does not decode is
    "invalid_body"; another coding (br, zstd, compress) is "unsupported_content_encoding".
    """
    if not content_encoding or not body:
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # the codings listed in the order they were applied
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, "gzip", limit)
        elif coding == "deflate":
            # RFC 9110 deflate is the zlib format; some senders send the bare deflate stream
            zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
            body = _inflate(body, zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS, "deflate", limit)
        elif coding != "identity":
            raise ParamError("unsupported_content_encoding",
                             f"Content-Encoding {coding[:40]!r} is not supported: send the body as is, "
                             "or gzip or deflate it")
    return body


def _inflate(data: bytes, wbits: int, name: str, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    while True:  # a gzip body may be several members one after another (RFC 1952 2.2)
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise ParamError("invalid_body", f"the {name} body does not decode: {exc}") from None
        size += len(chunk)
        if size > limit:
            raise ParamError("body_too_large", f"the {name} body decodes to more than {limit} bytes "
                                               "(request bodies are limited to that, decoded too)")
        out.append(chunk)
        if not inflater.eof:
            raise ParamError("invalid_body", f"the {name} body is cut short (its stream does not end)")
        data = inflater.unused_data
        if not data.strip(b"\0") or wbits != 16 + zlib.MAX_WBITS:
            if data.strip(b"\0"):
                raise ParamError("invalid_body", f"the {name} body has {len(data)} bytes after its stream")
            return b"".join(out)


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """(media type in lower case, its parameters with lower-case names) of a Content-Type."""
    if not content_type:
        return "", {}
    media, _, rest = content_type.partition(";")
    options: dict[str, str] = {}
    if rest:
        for piece in rest.split(";"):
            name, eq, value = piece.partition("=")
            if eq:
                options[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), options


def _charset(options: dict[str, str], default: str = "utf-8") -> str:
    charset = options.get("charset") or default
    if charset == "utf-8":
        return charset  # the usual case, without a codec lookup
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise ParamError("invalid_body", f"the body's charset {charset[:40]!r} is not one we know "
                                         "(send utf-8)") from None


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Parameters of a form, JSON, text/plain or multipart/form-data body (already decoded by
    `decode_body`); other bodies carry none (they are still logged raw)."""
    if not body:
        return {}
    media, options = media_type(content_type)
    if media == "application/json" or media.endswith("+json") or (not media and body.lstrip()[:1] == b"{"):
        return parse_json_object(_as_utf8(body, options) if "charset" in options else body)
    if media == "application/x-www-form-urlencoded" or (not media and b"=" in body):
        return _parse_form(body, options)
    if media == "text/plain":
        if body.lstrip()[:1] == b"{":  # text/plain holding JSON (sent so to avoid a CORS preflight)
            return parse_json_object(_as_utf8(body, options))
        if b"=" in body:  # text/plain holding a query string
            return _parse_form(body.strip(), options)
        return {}
    if media == "multipart/form-data":
        return _parse_multipart(body, options)
    return {}


def _as_utf8(body: bytes, options: dict[str, str]) -> bytes:
    charset = _charset(options)
    if charset == "utf-8":
        return body
    # bytes the charset does not know stay the bytes they were (parse_json_object keeps them)
    return body.decode(charset, "surrogateescape").encode("utf-8", "surrogateescape")


def _parse_form(body: bytes, options: dict[str, str]) -> Params:
    charset = _charset(options)
    if charset == "utf-8":  # a UTF-8 form reads exactly as a query string does, fast path included
        return _pairs_params(parse_query(body.decode("latin-1")))
    # percent escapes are bytes of the form's charset too (a latin-1 form sends é as %E9)
    text = body.decode(charset, "surrogateescape")
    return _pairs_params([(exact_text(name), exact_text(value)) for name, value in
                          parse_qsl(text, keep_blank_values=True, encoding=charset, errors="surrogateescape")])


def _parse_multipart(body: bytes, options: dict[str, str]) -> Params:
    """The text fields of a multipart/form-data body, through the `multipart` package.

    A part with a filename is an upload, not a parameter: it stays in the raw body only.
    """
    boundary = options.get("boundary")
    if not boundary:
        raise ParamError("invalid_body", "a multipart/form-data body needs the boundary in its Content-Type")
    charset = _charset(options)
    pairs: list[tuple[str, str]] = []
    try:
        with PushMultipartParser(boundary, content_length=len(body), max_segment_count=MAX_MULTIPART_PARTS,
                                 header_charset=charset) as parser:
            segment: MultipartSegment | None = None
            chunks: list[bytes] = []
            for event in (*parser.parse(body), *parser.parse(b"")):
                if isinstance(event, MultipartSegment):
                    segment, chunks = event, []
                elif event:
                    chunks.append(event)
                elif segment is not None:
                    if segment.filename is None and segment.name is not None:
                        part_charset = _charset({"charset": segment.charset} if segment.charset else {}, charset)
                        value = b"".join(chunks).decode(part_charset, "surrogateescape")
                        pairs.append((segment.name, exact_text(value)))
                    segment = None
    except MultipartError as exc:
        raise ParamError("invalid_body", f"the multipart/form-data body does not parse: {exc}") from None
    return _pairs_params(pairs)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON body's object of parameters, its numbers exact.

    orjson reads it; only when it holds a float (which may have rounded a long decimal, or
    an integer beyond 64 bits) is it read again by the standard library with every such
    number kept as the text it was sent as (`JSONNumber`). Integers orjson reads are exact.
    Strings that are not UTF-8 (raw bytes, or `\\udcXX` escapes), which orjson refuses, are read
    by the standard library too, and every string then keeps its bytes' identity (`exact_text`).
    """
    exact = False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "surrogate" not in str(exc) and "UTF-8" not in str(exc):
            raise ParamError("invalid_body", f"the JSON body does not parse: {exc}") from None
        try:  # strings that are not UTF-8: each keeps its bytes (exact_text, below)
            data = _exact_decoder().decode(body.decode("utf-8", "surrogateescape"))
        except ValueError:
            raise ParamError("invalid_body", f"the JSON body does not parse: {exc}") from None
        exact = True
    if not isinstance(data, dict):
        raise ParamError("invalid_body", "the JSON body must be an object of parameters")
    too_deep, has_float = _json_shape(data, MAX_JSON_DEPTH)
    if too_deep:
        raise ParamError("invalid_body", f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    if has_float and not exact:
        data = _exact_decoder().decode(body.decode("utf-8"))
    if exact or b"\\" in body:  # a backslash escape may have made text that needs exact_text
        data = _exact_strings(data)
    return data


def _exact_strings(value: Any) -> Any:
    """A parsed JSON value with every string (names too) as `exact_text` (numbers kept as they are)."""
    if value.__class__ is str:
        return exact_text(value)
    if isinstance(value, dict):
        return {exact_text(name): _exact_strings(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_exact_strings(item) for item in value]
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoders = threading.local()


def _exact_decoder() -> json.JSONDecoder:
    """This thread's JSON decoder that keeps numbers as sent (one per thread: building one per
    body cost more than the parse itself)."""
    decoder = getattr(_decoders, "decoder", None)
    if decoder is None:
        # the scanner hands parse_float only valid number literals: no need to check them again
        decoder = _decoders.decoder = json.JSONDecoder(parse_float=partial(str.__new__, JSONNumber),
                                                       parse_int=_exact_int, parse_constant=_refuse_constant)
    return decoder


def _exact_int(text: str) -> int | JSONNumber:
    """An integer orjson also writes (64 bits), else its text (never int() of thousands of digits)."""
    if len(text) <= 20:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return str.__new__(JSONNumber, text)  # the scanner's own match: a valid literal


def _json_shape(value: Any, limit: int) -> tuple[bool, bool]:
    """(nested more than `limit` objects/arrays deep, holds a float): one walk, no recursion."""
    has_float = False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True, has_float
        for child in item.values() if item.__class__ is dict else item:
            cls = child.__class__
            if cls is float:
                has_float = True
            elif cls is dict or cls is list:
                stack.append((child, depth + 1))
    return False, has_float


def merge_params(query_pairs: list[tuple[str, str]], body_params: dict[str, Any]) -> Params:
    """Query string first, then body parameters the query does not carry (the query wins a
    name both carry, as it always has). A name sent more than once within the query, or
    within a form or multipart body, keeps every value in `repeated`."""
    merged = _pairs_params(query_pairs)
    if not body_params:  # a GET: nothing to merge
        return merged
    body_repeated = getattr(body_params, "repeated", None)
    for name, value in body_params.items():
        if name not in merged:
            merged[name] = value
            if body_repeated and name in body_repeated:
                if not merged.repeated:
                    merged.repeated = {}
                merged.repeated[name] = body_repeated[name]  # type: ignore[index]
    return merged


def custom_data(params: dict[str, Any], consumed: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """What a record's custom_data keeps of `params`: every name but the `consumed` ones with its
    value, and every repeated name (consumed or not) with the list of all its values."""
    custom = {k: v for k, v in params.items() if k not in consumed} if consumed else dict(params)
    repeated = getattr(params, "repeated", None)
    if repeated:
        for name, values in repeated.items():
            custom[name] = list(values)
    return custom


def split_params(params: dict[str, Any], vocabulary: dict[str, tuple[str, ...]]
                 ) -> tuple[dict[str, str | None], dict[str, Any]]:
    """(recognised fields by canonical name, custom_data of everything else).

    Only the alias that supplies a field is consumed; a second alias of the same
    field stays in custom_data so a conflicting value is never silently lost. A name
    sent more than once gives its first value to the field, and the list of all its
    values to custom_data (`custom_data`).
    """
    fields: dict[str, str | None] = dict.fromkeys(vocabulary)
    consumed: list[str] = []
    for canonical, aliases in vocabulary.items():
        for alias in aliases:
            if alias in params:
                fields[canonical] = _as_text(params[alias])
                consumed.append(alias)
                break
    return fields, custom_data(params, consumed)


def find_click_id(params: dict[str, Any]) -> str | None:
    for alias in CLICK_ID:
        if alias in params:
            return _as_text(params[alias])
    return None
