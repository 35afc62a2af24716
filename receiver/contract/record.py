"""The log record: every top-level member and every `fields` key, with its type and meaning.

This is the one definition. The receiver builds records with `new_record` and the field
sets below (`POSTBACK_FIELDS.new(...)`, ...), so it can write no member or key this module
does not define; the pipeline's staging derives its columns and types from `MEMBERS` and
`all_fields()`; docs/log-format.md's tables are rendered from it (receiver.contract.record_doc,
checked by a test).

A record is a flat JSON object (`MEMBERS`, in the order the writer writes them) whose
`fields` member holds what the receiver parsed and decided. Which keys `fields` holds
depends on the record's `kind`: `FIELDS_BY_KIND[kind]`, plus `ANY_RECORD_FIELDS` (a click
id found in a request refused before its route read it, and the encoding fallback).
Keys are filled as far as the request got: a refused request's fields are a subset.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 1  # the `v` of every record

# Value types, as JSON holds them. DECIMAL and UTC_TIME are JSON strings of a fixed form.
TEXT = "string"
INT = "int"
BOOL = "bool"
DECIMAL = "decimal string"  # an exact decimal, at most 8 places: "12.50"
UTC_TIME = "UTC time string"  # YYYY-MM-DDTHH:MM:SS.ffffffZ (receiver.contract.timeutil.format_utc)
OBJECT = "object"
TYPES = (TEXT, INT, BOOL, DECIMAL, UTC_TIME, OBJECT)

KINDS = ("click", "track", "postback", "health", "unrouted", "other", "probe", "http_error")
RESULTS = ("click", "offer_inactive", "tracked", "recorded", "duplicate", "test", "ok", "probe")


@dataclass(frozen=True)
class Definition:
    """One top-level member or one `fields` key.

    `nullable`: the value may be null. `only`: the key is present only in these records
    (e.g. "link clicks"); without it, every record of its kind that got that far has it.
    `framing`: written by the segment framing (receiver.contract.framing), not by whoever
    builds the record.
    """

    name: str
    type: str
    meaning: str
    nullable: bool = False
    only: str | None = None
    framing: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: unknown type {self.type!r} (known: {', '.join(TYPES)})")


class UnknownNameError(KeyError):
    """A record or fields key the contract does not define."""


_ABSENT = object()  # an `only` key not given: left out of the dict, not null


class Shape:
    """An ordered set of definitions, and the fast builder of dicts holding their names.

    `new(**values)` gives every name that is not `only` some records' (null unless given),
    in definition order, and the `only` ones that are given; `partial(**values)` only the
    given names, in the order given (a refused request's fields). Both refuse a name the
    shape does not define. `new` is a function compiled from the definitions with one
    keyword parameter per name, building a dict display: as fast as the dict literal it
    replaces, and a misspelt name is a TypeError, not a silent new key.
    """

    def __init__(self, name: str, definitions: tuple[Definition, ...], defaults: dict[str, Any] | None = None):
        self.name = name
        self.definitions = definitions
        self.names = tuple(d.name for d in definitions)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{name}: a name is defined twice")
        self._known = frozenset(self.names)
        self.always = tuple(d.name for d in definitions if d.only is None)
        defaults = dict(defaults or {})
        if not defaults.keys() <= set(self.always):
            raise UnknownNameError(f"{name}: defaults for {sorted(defaults.keys() - set(self.always))}, "
                                   "which it does not always hold")
        self.new: Callable[..., dict[str, Any]] = _compile_builder(self, defaults)

    def __iter__(self) -> Iterator[Definition]:
        return iter(self.definitions)

    def __getitem__(self, name: str) -> Definition:
        for definition in self.definitions:
            if definition.name == name:
                return definition
        raise UnknownNameError(f"{self.name} has no {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def partial(self, **values: Any) -> dict[str, Any]:
        if not self._known.issuperset(values):
            raise UnknownNameError(f"{self.name} defines no {sorted(values.keys() - self._known)}")
        return values


def _compile_builder(shape: Shape, defaults: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """`shape.new`: def new(*, a=None, b=None, c=_ABSENT): built = {"a": a, "b": b}; c if given."""
    for name in shape.names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"{shape.name}: {name!r} cannot be a keyword parameter")
    optional = [n for n in shape.names if n not in shape.always]
    params = [f"{n}=_defaults[{n!r}]" if n in defaults else f"{n}=None" for n in shape.always]
    params += [f"{n}=_ABSENT" for n in optional]
    lines = [f"def new(*, {', '.join(params)}):",
             f"    built = {{{', '.join(f'{n!r}: {n}' for n in shape.always)}}}"]
    for n in optional:
        lines += [f"    if {n} is not _ABSENT:", f"        built[{n!r}] = {n}"]
    lines.append("    return built")
    namespace: dict[str, Any] = {"_ABSENT": _ABSENT, "_defaults": defaults}
    exec(compile("\n".join(lines), f"<{shape.name} builder>", "exec"), namespace)  # noqa: S102
    builder = namespace["new"]
    builder.__qualname__ = builder.__name__ = "new"
    builder.__doc__ = (f"A dict of {shape.name}: every name but the `only` ones (null unless given), then "
                       "the `only` ones given.")
    return builder


# ---------------------------------------------------------------- top-level members

MEMBERS = Shape("record", (
    Definition("crc32", TEXT, "checksum of the line, 8 lowercase hex digits (see Integrity)", framing=True),
    Definition("v", INT, f"format version ({FORMAT_VERSION})"),
    Definition("seq", INT, "position in the log: strictly increasing across all segments, in append order"),
    Definition("event_id", TEXT, "UUID v4 of this record"),
    Definition("received_at", UTC_TIME, "when the request arrived, UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`"),
    Definition("kind", TEXT, "`click`, `track`, `postback`, `health`, `unrouted` (no such path), `other` "
               "(e.g. a wrong method, and `GET /openapi.json` with `result = \"ok\"`), `probe` (a `HEAD` of a "
               "tracking link: answered like the click, but no click is made), `http_error` (a request the HTTP "
               "server refused before any route read it: a malformed request line or header, a head over 64 KiB, "
               "an invalid Content-Length or chunked body)"),
    Definition("route", TEXT, "the route template that served it (`/api/postback`, `/postback/{key}`, "
               "`/t/{slug}`, ...); null when unrouted", nullable=True),
    Definition("method", TEXT, "the HTTP method, as received (`\"\"` in an `http_error` record whose request "
               "line names none)"),
    Definition("path", TEXT, "the path, as received (percent-decoded; `\"\"` in an `http_error` record whose "
               "request line names none)"),
    Definition("query", TEXT, "the raw query string, undecoded"),
    Definition("body", TEXT, "the raw body as received (still compressed when `fields.content_encoding` names a "
               "coding), at most 64 KiB of it: UTF-8 text, or base64 when `body_encoding` is `base64`"),
    Definition("body_encoding", TEXT, "`utf-8` or `base64`"),
    Definition("body_bytes", INT, "the full body size in bytes"),
    Definition("body_truncated", BOOL, "true when `body` holds only the first 64 KiB"),
    Definition("content_type", TEXT, "the Content-Type header", nullable=True),
    Definition("remote_addr", TEXT, "the client address as the server saw it", nullable=True),
    Definition("forwarded_for", TEXT, "the X-Forwarded-For header, unparsed", nullable=True),
    Definition("user_agent", TEXT, "the User-Agent header", nullable=True),
    Definition("referer", TEXT, "the Referer header", nullable=True),
    Definition("http_status", INT, "the status we answered"),
    Definition("answer_body", TEXT, "the body we answered when a partner's profile made it from a template "
               "(`[partners.answers]` of config.toml, e.g. ironSource's `<eventId>:OK`); null for our own JSON "
               "answers", nullable=True),
    Definition("result", TEXT, "on success: " + ", ".join(f"`{r}`" for r in RESULTS), nullable=True),
    Definition("error", TEXT, "on refusal: the error code we answered (`click_not_found`, `invalid_api_key`, "
               "...: receiver.contract.codes)", nullable=True),
    Definition("fields", OBJECT, "what we parsed and decided, by kind (below)"),
    Definition("custom_data", OBJECT, "every parameter we did not recognise, unchanged (strings from the query, "
               "form, text and multipart bodies; JSON values as sent, numbers with the very digits sent); a name "
               "sent more than once in the query, or in a form or multipart body, recognised or not, holds the "
               "list of all its values in the order sent; a name or value whose bytes are not UTF-8 is kept as text "
               "that gives them back (`receiver.contract.params.exact_text`)"),
))
# What a writer builds: the members but the framing's, `v` set, `seq` left to the log writer.
RECORD = Shape("record", tuple(d for d in MEMBERS if not d.framing), defaults={"v": FORMAT_VERSION})


# A record with every member (`v` set; `seq` null until the log writer assigns it).
new_record = RECORD.new


# ---------------------------------------------------------------- fields, by kind

CLICK_FIELDS = Shape("click fields", (
    Definition("click_id", TEXT, "the click id we issued (UUID v4)"),
    Definition("source", TEXT, "`link` (tracking link, seed 003) or `earn` (earn-app task, seed 000)"),
    Definition("offer_id", TEXT, "the offer clicked"),
    Definition("partner_id", TEXT, "the partner owning the offer"),
    Definition("affiliate_id", TEXT, "the link's affiliate (links)", nullable=True),
    Definition("user_id", TEXT, "the app user (earn)", nullable=True),
    Definition("product_id", TEXT, "the earn product (earn)", nullable=True),
    Definition("expires_at", UTC_TIME, "when the click expires, UTC; null = never", nullable=True),
    Definition("redirect_url", TEXT, "where the click was sent: the offer URL (links) or the task URL (earn), "
               "with our parameters"),
    Definition("offer_currency", TEXT, "the offer's currency at click time (a snapshot of the offer's terms)"),
    Definition("revenue_share_percent", DECIMAL, "the offer's revenue share at click time, percent of the "
               "amount; null when it pays a fixed amount", nullable=True),
    Definition("revenue_share_fixed", DECIMAL, "the offer's fixed payout at click time, in `offer_currency`; "
               "null when it pays a percent", nullable=True),
    Definition("slug", TEXT, "the tracking link's slug", only="link clicks"),
    Definition("task_url", TEXT, "the task URL the app sent, else the product's", only="earn clicks"),
))

TRACK_FIELDS = Shape("track fields", (
    Definition("click_id", TEXT, "the click id of the path"),
    Definition("offer_id", TEXT, "the click's offer"),
    Definition("partner_id", TEXT, "the click's partner"),
    Definition("user_id", TEXT, "the click's app user", nullable=True),
    Definition("product_id", TEXT, "the click's product", nullable=True),
    Definition("affiliate_id", TEXT, "the click's affiliate", nullable=True),
))

POSTBACK_FIELDS = Shape("postback fields", (
    Definition("dialect", TEXT, "`network` (`/api/postback`, seed 003), `publisher` (`/postback/{key}`, seed "
               "001), `peerclick` (`/postback`, seed 002), `advertiser` (`/postback/advertiser`, seed 004), "
               "`earn` (`/api/v1/earn/postback`, seed 000), `profile` (`/postback/{key}` of a partner with a "
               "profile: its parameters are the profile's, docs/configuration.md)"),
    Definition("click_id", TEXT, "from `click_id`, `cid`, `clickid` or `clickId` (a profile: its `click_id` "
               "parameters); null when missing or empty", nullable=True),
    Definition("transaction_id", TEXT, "from `transaction_id`, `txn`, `order_id`, `txid` or `transactionId` (a "
               "profile: its `transaction_id` parameters; a reversal: the transaction it takes back); else the "
               "click id. An id whose bytes are not UTF-8 is kept as text that gives them back "
               "(`receiver.contract.params.exact_text`: `caf%E9` is `caf\\xe9`)", nullable=True),
    Definition("transaction_id_source", TEXT, "`param`, `default` (the click id) or `reverses` (a reversal: "
               "the profile's `reverses` parameter)", nullable=True),
    Definition("status_raw", TEXT, "the status as sent; null when absent. For a profile partner this is the "
               "status: the pipeline maps it with the partner's `[partners.statuses]` at each run", nullable=True),
    Definition("status", TEXT, "the status normalised when it arrived: `approved`, `pending`, `rejected` (for "
               "the seed dialects including unknown values; a reversal is `rejected`), `test`, or `unknown` (a "
               "value a profile's mapping does not know)"),
    Definition("amount", DECIMAL, "exact decimal (also from `payout`; a profile: its `amount` parameters, read "
               "in its amount format); `\"0\"` when not sent; null for a reversal (see `reversal_amount`)",
               nullable=True),
    Definition("commission", DECIMAL, "exact decimal; `\"0\"` when not sent; null for a reversal", nullable=True),
    Definition("commission_sent", BOOL, "whether a commission was sent (else the offer's revenue share applies)"),
    Definition("currency", TEXT, "upper-case ISO 4217 code of `amount` and `commission`", nullable=True),
    Definition("currency_source", TEXT, "`param`, `offer` (the offer's currency) or `default` (the config's "
               "`base_currency`, for an offer no longer configured)", nullable=True),
    Definition("campaign_id", TEXT, "ClickWall's campaign id (advertiser dialect only)", nullable=True),
    Definition("key_present", BOOL, "whether an api key came"),
    Definition("key_source", TEXT, "where the key came from: `path`, `header` or `param`", nullable=True),
    Definition("key_fingerprint", TEXT, "the first 12 hex digits of the key's SHA-256 (never the key)", nullable=True),
    Definition("key_partner_id", TEXT, "the partner the key belongs to", nullable=True),
    Definition("client_ip", TEXT, "the address the postback is judged by for a partner's `allowed_ips`: "
               "`remote_addr`, or the right-most `X-Forwarded-For` entry that is not a trusted proxy when "
               "`remote_addr` is one (config `trusted_proxies`)", nullable=True),
    Definition("signature_present", BOOL, "whether an `X-Signature` header came (a partner with "
               "`signing_secret` requires it; refusals: `signature_required`, `invalid_signature`, "
               "`signature_expired`); for a profile with a platform's `signature_scheme`, whether that "
               "platform's signature came (Tapjoy's `verifier`, ironSource's `signature`, ayeT's "
               "`X-Ayetstudios-Security-Hash`, BitLabs' `hash`)"),
    Definition("partner_id", TEXT, "the click's partner, when the click is known", nullable=True),
    Definition("offer_id", TEXT, "the click's offer, when the click is known", nullable=True),
    Definition("affiliate_id", TEXT, "the click's affiliate, when the click is known", nullable=True),
    Definition("user_id", TEXT, "the click's app user, when the click is known", nullable=True),
    Definition("product_id", TEXT, "the click's product, when the click is known", nullable=True),
    Definition("click_source", TEXT, "the click's `source` (`link` or `earn`), when the click is known", nullable=True),
    Definition("status_updates", BOOL, "the owning partner's `status_updates` setting when the postback "
               "arrived", nullable=True),
    Definition("preset", TEXT, "the partner's `preset` (e.g. `keitaro`); null for a profile without one",
               nullable=True, only="profile postbacks"),
    Definition("sent_user_id", TEXT, "the platform's own user id, from the profile's `user_id` parameters",
               nullable=True, only="profile postbacks"),
    Definition("sent_offer_id", TEXT, "the platform's own offer id, from the profile's `offer_id` parameters",
               nullable=True, only="profile postbacks"),
    Definition("survey_id", TEXT, "the platform's survey id, from the profile's `survey_id` parameters",
               nullable=True, only="profile postbacks"),
    Definition("amount_param", TEXT, "the parameter the amount was read from; null when none was sent (then "
               "`amount` is `\"0\"`)", nullable=True, only="profile postbacks"),
    Definition("reversal", BOOL, "true when the postback takes back an earlier conversion (a negative amount, "
               "or ayeT's `r-` transaction id, on a profile with `negative = \"reversal\"`): recorded against "
               "that conversion's (click_id, transaction_id) as a `rejected` status step, never as a conversion "
               "of its own", only="profile postbacks"),
    Definition("repeated_params", TEXT, "the names sent more than once (in the query, or in a form or "
               "multipart body), as a JSON array of strings in the order first sent: `custom_data` holds each "
               "one's list of values", only="postbacks with a repeated parameter"),
    Definition("macro_field", TEXT, "the field whose value is an unfilled macro (`click_id`, `amount`, "
               "`commission`, `currency`)", only="postbacks refused with `unsubstituted_macro`"),
    Definition("macro_param", TEXT, "the parameter that carried it (e.g. `payout`)",
               only="postbacks refused with `unsubstituted_macro`"),
    Definition("macro", TEXT, "the macro found in it, as sent (e.g. `{payout}`: receiver.contract.macros)",
               only="postbacks refused with `unsubstituted_macro`"),
    Definition("reversal_transaction_id", TEXT, "a reversal's own transaction id as sent", nullable=True,
               only="reversals"),
    Definition("reversal_amount", DECIMAL, "the amount a reversal takes back (its absolute value), in "
               "`currency`", nullable=True, only="reversals"),
))

PROBE_FIELDS = Shape("probe fields", (
    Definition("slug", TEXT, "the tracking link's slug"),
    Definition("offer_id", TEXT, "the link's offer"),
    Definition("partner_id", TEXT, "the partner owning the offer"),
    Definition("affiliate_id", TEXT, "the link's affiliate", nullable=True),
    Definition("redirect_url", TEXT, "the Location answered: the offer URL with our parameters but no click "
               "id (no click was made, so none could ever convert); the homepage for an inactive offer"),
))

HTTP_ERROR_FIELDS = Shape("http_error fields", (
    Definition("server_reason", TEXT, "the HTTP server's own words for what it refused (waitress: `Bad URI`, "
               "`Invalid header`, `Content-Length is invalid`, `Invalid chunk size`...)"),
    Definition("request_line", TEXT, "the request line as received, escaped (`receiver.contract.record."
               "escape_bytes`): UTF-8 text as it is, `\\\\` for a backslash, and `\\xHH` for each byte of a "
               "character that is not printable or not UTF-8", nullable=True),
    Definition("headers", TEXT, "the header lines after the request line as received, parsed or not, each "
               "with its CRLF, and the blank line that ends them (escaped like `request_line`, so a CRLF reads "
               "`\\x0d\\x0a`)"),
    Definition("head_truncated", BOOL, "true when the request line and `headers` hold only the first 64 KiB of a "
               "longer head (`headers_too_large`)"),
))

ANY_RECORD_FIELDS = Shape("fields of any record", (
    Definition("click_id", TEXT, "a click id parameter the request carried (`click_id`, `cid`, `clickid` or "
               "`clickId`), else null: in `unrouted` records (a postback sent to a wrong path), in a "
               "request refused before its route read it (e.g. a wrong method) and in `http_error` records",
               nullable=True),
    Definition("content_encoding", TEXT, "the request's Content-Encoding header (`gzip`, `deflate`): its "
               "parameters were read from the decoded body, and `body` keeps the body as received",
               only="requests with a Content-Encoding"),
    Definition("unencodable", TEXT, "why the parsed fields could not be written as JSON; then it is the only "
               "key, and `custom_data` is empty (the raw request is still logged)", only="such records"),
))

FIELDS_BY_KIND: dict[str, Shape] = {
    "click": CLICK_FIELDS,
    "track": TRACK_FIELDS,
    "postback": POSTBACK_FIELDS,
    "probe": PROBE_FIELDS,
    "http_error": HTTP_ERROR_FIELDS,
}


def allowed_fields(kind: str) -> frozenset[str]:
    """Every key a `fields` of a record of this kind may hold."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r} (known: {', '.join(KINDS)})")
    own = FIELDS_BY_KIND.get(kind)
    return frozenset((*(own.names if own else ()), *ANY_RECORD_FIELDS.names))


def all_fields() -> dict[str, str]:
    """{fields key: type} over every kind, in first-defined order (postbacks, clicks, tracks,
    any record): the columns a flattened `fields` has. A key has one type in every kind."""
    types: dict[str, str] = {}
    for shape in (POSTBACK_FIELDS, CLICK_FIELDS, TRACK_FIELDS, PROBE_FIELDS, HTTP_ERROR_FIELDS, ANY_RECORD_FIELDS):
        for definition in shape:
            known = types.setdefault(definition.name, definition.type)
            if known != definition.type:
                raise ValueError(f"fields key {definition.name!r} is {known} in one kind, "
                                 f"{definition.type} in another")
    return types


def members() -> dict[str, str]:
    """{top-level member: type}, in the order the writer writes them (crc32 first)."""
    return {d.name: d.type for d in MEMBERS}


# ---------------------------------------------------------------- raw bytes as text

_HEX = re.compile(r"\\(\\|x[0-9a-f]{2})")


def escape_bytes(raw: bytes) -> str:
    """Bytes as received, as readable text that gives them back (`unescape_bytes`).

    UTF-8 text stays as it is; a backslash becomes `\\\\`; every byte of a character that is
    not printable (control characters, CR, LF, NUL, line separators) or not UTF-8 at all
    becomes `\\xHH`. `http_error` records keep the request line and header lines so.
    """
    text = raw.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text  # the usual case: nothing to escape
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


def unescape_bytes(text: str) -> bytes:
    """The bytes `escape_bytes` gave `text` for."""
    out = bytearray()
    pos = 0
    for match in _HEX.finditer(text):
        out += text[pos:match.start()].encode("utf-8")
        token = match.group(1)
        out += b"\\" if token == "\\" else bytes([int(token[1:], 16)])
        pos = match.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)
