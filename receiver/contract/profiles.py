"""Partner profiles: how one platform's postback is read, checked and answered, as data.

A partner of config.toml may name a platform preset (`preset = "keitaro"`, a data file in
receiver/contract/presets/) and may set the same keys itself: `[partners.params]`,
`[partners.statuses]`, `[partners.amounts]`, `[partners.answers]`, `signature_scheme`,
`[partners.macros]`. Its own keys override the preset's, key by key. The result is a
`PartnerProfile`: the receiver decides a `/postback/{key}` request of that partner with it,
and the pipeline maps the raw statuses of the log with it (`status_for`), so fixing a
mapping and running the pipeline again corrects history.

Everything here is validated when the config is read: an unknown preset, field, status or
key, a status value mapped twice, an answer status out of range, a body template that does
not parse are ConfigErrors naming the file and line (the partner's line in config.toml, or
the preset file's line for a broken preset).
"""

from __future__ import annotations

import functools
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from receiver.contract.config import ConfigError
from receiver.contract.params import (
    AMOUNT,
    APPROVED,
    CLICK_ID,
    COMMISSION,
    CURRENCY,
    PENDING,
    REJECTED,
    STATUS,
    TRANSACTION_ID,
    normalise_status,
)
from receiver.contract.toml_lines import TomlLocator

# A record's `fields.dialect` for a postback on the own URL (`/postback/{key}`) of a partner with
# a profile: the pipeline maps the raw status of exactly these records with the partner's profile.
PROFILE_DIALECT = "profile"
# The fields a profile reads, in the order a record's fields hold them. user_id, offer_id and
# survey_id are the platform's own ids, kept as sent (the click's user and offer come from the click).
PROFILE_FIELDS = ("click_id", "transaction_id", "amount", "commission", "currency", "status",
                  "user_id", "offer_id", "survey_id")
# A profile without its own [params] for a field reads the seed vocabulary's names.
DEFAULT_PARAMS: dict[str, tuple[str, ...]] = {
    "click_id": CLICK_ID,
    "transaction_id": TRANSACTION_ID,
    "amount": AMOUNT,
    "commission": COMMISSION,
    "currency": CURRENCY,
    "status": STATUS,
}
PROFILE_STATUSES = ("approved", "pending", "rejected")
# A profile without its own [statuses] for a status knows the seed vocabulary's values.
DEFAULT_STATUSES: dict[str, tuple[str, ...]] = {"approved": APPROVED, "pending": PENDING, "rejected": REJECTED}
# "none": nothing is checked; "clickledger": our X-Signature / X-Timestamp (docs/endpoints.md);
# the others are the platforms' own (receiver/signatures.py, each citing its documentation).
SIGNATURE_SCHEMES = ("none", "clickledger", "tapjoy", "ironsource", "ayet", "bitlabs", "cpx")
# The query parameter each platform scheme's signature is sent in, first present wins (ayeT signs
# in a header, clickledger in X-Signature): receiver/signatures.py reads them, and a preset's
# [macros] signature goes into the first name in the URL `clickledger partner url` prints.
SIGNATURE_PARAMS: dict[str, tuple[str, ...]] = {
    "tapjoy": ("verifier",),
    "ironsource": ("signature",),
    "bitlabs": ("hash",),
    "cpx": ("hash", "secure_hash"),
}
NEGATIVE_AMOUNTS = ("refuse", "reversal")
ANSWERS = ("success", "refusal", "permanent_refusal")
ANSWER_KEYS = ("status", "body", "content_type")
AMOUNT_KEYS = ("decimal_comma", "thousands_separator", "currency_symbol", "negative", "reverses",
               "reversal_prefix")
# The keys of a [[partners]] entry that make it a profile partner (besides status_updates,
# which every partner has).
PROFILE_KEYS = ("preset", "params", "statuses", "amounts", "answers", "signature_scheme", "macros")
# The keys a preset file holds: what a partner can set, and what describes the preset.
PRESET_KEYS = ("name", "docs", "params", "statuses", "amounts", "answers", "signature_scheme", "status_updates",
               "macros")
TEXT_PLAIN = "text/plain; charset=utf-8"
PRESETS_PACKAGE = "receiver.contract.presets"


@dataclass(frozen=True)
class Answer:
    """One answer of a profile: `status` None keeps the answer's own HTTP status; `body` None
    keeps our JSON body (then content_type is ours too); a body may hold `{param}`
    placeholders of the request's own parameters and `{error}` (the refusal's code)."""

    status: int | None = None
    body: str | None = None
    content_type: str = TEXT_PLAIN

    def render(self, params: Mapping[str, Any], error: str | None = None) -> str:
        """The body with its placeholders filled: a parameter the request lacks is empty."""
        assert self.body is not None
        out: list[str] = []
        for literal, name, _, _ in string.Formatter().parse(self.body):
            out.append(literal)
            if name is None:
                continue
            if name == "error":
                out.append(error or "")
                continue
            value = params.get(name)
            out.append("" if value is None else value if isinstance(value, str) else str(value))
        return "".join(out)


@dataclass(frozen=True)
class Answers:
    success: Answer | None = None
    refusal: Answer | None = None
    # a refusal no retry can fix, for platforms that retry every other answer (Tapjoy: 403)
    permanent_refusal: Answer | None = None

    def for_refusal(self, permanent: bool) -> Answer | None:
        if permanent and self.permanent_refusal is not None:
            return self.permanent_refusal
        return self.refusal


@dataclass(frozen=True)
class AmountFormat:
    """How the platform writes amounts, and how it reverses a conversion.

    A negative amount is refused; with negative = "reversal" a postback is a reversal when its
    amount is negative, or when `reversal_prefix` is set and the first present parameter of
    `reverses` starts with it (ayeT: the original transaction id with "r-" in front). A
    reversal takes back the conversion that parameter names (without the prefix).
    """

    decimal_comma: bool = False
    thousands_separator: bool = False
    currency_symbol: bool = False
    negative: str = "refuse"
    reverses: tuple[str, ...] = ()
    reversal_prefix: str = ""


@dataclass(frozen=True)
class PartnerProfile:
    """A partner's resolved profile: its preset's keys with its own on top."""

    preset: str | None
    docs: tuple[str, ...]
    # every field of PROFILE_FIELDS -> its parameter names, first present wins (() reads none)
    params: dict[str, tuple[str, ...]] = field(hash=False)
    statuses: dict[str, str] = field(hash=False)  # the platform's value, lower-cased -> our status
    amounts: AmountFormat = AmountFormat()
    answers: Answers = Answers()
    signature_scheme: str = "none"
    macros: dict[str, str] = field(default_factory=dict, hash=False)


def status_for(raw: str | None, statuses: Mapping[str, str] | None) -> str:
    """approved | pending | rejected | test | unknown, for a status as sent.

    `statuses` None (a partner of the seed dialects): the seed vocabulary, where a value it
    does not know counts as rejected (seed 003). With a profile's mapping, a value it does not
    map is `unknown` (never silently rejected); `test` stays the connectivity test unless the
    mapping says otherwise. A missing or empty status is approved, as in the seed dialects.
    """
    if statuses is None:
        return normalise_status(raw)
    if raw is None or not raw.strip():
        return "approved"
    value = raw.strip().lower()
    mapped = statuses.get(value)
    if mapped is not None:
        return mapped
    return "test" if value == "test" else "unknown"


# ---------------------------------------------------------------- validation

Fail = Callable[[str, tuple[str, ...]], NoReturn]


def _names(value: Any, what: str, path: tuple[str, ...], fail: Fail, *, empty: bool = False) -> tuple[str, ...]:
    """A list of non-empty strings (a single string is a list of one); `empty`: [] is allowed."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or (not items and not empty) or not all(
            isinstance(v, str) and v.strip() for v in items):
        fail(f"{what} must be a {'' if empty else 'non-empty '}list of names, e.g. [\"subid\", \"click_id\"]"
             + (" ([] reads none)" if empty else ""), path)
    return tuple(v.strip() for v in items)


def _bool(value: Any, what: str, path: tuple[str, ...], fail: Fail) -> bool:
    if not isinstance(value, bool):
        fail(f"{what} must be true or false, got {value!r}", path)
    return value


def _table(value: Any, what: str, path: tuple[str, ...], fail: Fail, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(f"{what} must be a table ([{what}] or {what} = {{ ... }})", path)
    for key in value:
        if key not in known:
            fail(f"unknown key {key!r} in {what} (known: {', '.join(known)})", (*path, key))
    return value


def check_params(value: Any, fail: Fail, prefix: str) -> dict[str, tuple[str, ...]]:
    table = _table(value, f"{prefix}.params", ("params",), fail, PROFILE_FIELDS)
    # [] reads no parameter for the field (Tapjoy's `currency` is its reward amount, never a currency)
    return {name: _names(v, f"{prefix}.params.{name}", ("params", name), fail, empty=True)
            for name, v in table.items()}


def check_statuses(value: Any, fail: Fail, prefix: str) -> dict[str, tuple[str, ...]]:
    table = _table(value, f"{prefix}.statuses", ("statuses",), fail, PROFILE_STATUSES)
    out: dict[str, tuple[str, ...]] = {}
    for status, values in table.items():
        items = [values] if isinstance(values, str | int) and not isinstance(values, bool) else values
        if not isinstance(items, list) or not all(
                isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip() for v in items):
            fail(f"{prefix}.statuses.{status} must be a list of the platform's values, e.g. [\"sale\", \"1\"]",
                 ("statuses", status))
        lowered = tuple(str(v).strip().lower() for v in items)
        for value in lowered:
            if lowered.count(value) > 1:
                fail(f"{prefix}.statuses.{status} lists {value!r} twice", ("statuses", status))
        out[status] = lowered
    return out


def check_amounts(value: Any, fail: Fail, prefix: str) -> dict[str, Any]:
    table = _table(value, f"{prefix}.amounts", ("amounts",), fail, AMOUNT_KEYS)
    out: dict[str, Any] = {}
    for key in ("decimal_comma", "thousands_separator", "currency_symbol"):
        if key in table:
            out[key] = _bool(table[key], f"{prefix}.amounts.{key}", ("amounts", key), fail)
    if "negative" in table:
        if table["negative"] not in NEGATIVE_AMOUNTS:
            fail(f"{prefix}.amounts.negative must be one of {', '.join(map(repr, NEGATIVE_AMOUNTS))}, "
                 f"got {table['negative']!r}", ("amounts", "negative"))
        out["negative"] = table["negative"]
    if "reverses" in table:
        out["reverses"] = _names(table["reverses"], f"{prefix}.amounts.reverses", ("amounts", "reverses"), fail)
    if "reversal_prefix" in table:
        if not isinstance(table["reversal_prefix"], str):
            fail(f"{prefix}.amounts.reversal_prefix must be a string, e.g. \"r-\"", ("amounts", "reversal_prefix"))
        out["reversal_prefix"] = table["reversal_prefix"]
    return out


def check_answers(value: Any, fail: Fail, prefix: str) -> dict[str, dict[str, Any]]:
    table = _table(value, f"{prefix}.answers", ("answers",), fail, ANSWERS)
    out: dict[str, dict[str, Any]] = {}
    for kind, answer in table.items():
        path = ("answers", kind)
        what = f"{prefix}.answers.{kind}"
        answer = _table(answer, what, path, fail, ANSWER_KEYS)
        checked: dict[str, Any] = {}
        if "status" in answer:
            status = answer["status"]
            low, high = (200, 299) if kind == "success" else (200, 499)
            if isinstance(status, bool) or not isinstance(status, int) or not low <= status <= high:
                fail(f"{what}.status must be an HTTP status from {low} to {high}, got {status!r}"
                     + ("" if kind == "success" else " (503 stays ours: a platform must retry our transient "
                                                      "failures)"), (*path, "status"))
            checked["status"] = status
        if "body" in answer:
            checked["body"] = _template(answer["body"], what, (*path, "body"), fail)
        if "content_type" in answer:
            content_type = answer["content_type"]
            if not isinstance(content_type, str) or not content_type.strip() or any(c in content_type for c in "\r\n"):
                fail(f"{what}.content_type must be a media type, e.g. \"text/plain\"", (*path, "content_type"))
            checked["content_type"] = content_type.strip()
        out[kind] = checked
    return out


def _template(body: Any, what: str, path: tuple[str, ...], fail: Fail) -> str:
    """A body template: text with `{param}` placeholders ({{ and }} for braces), nothing else."""
    if not isinstance(body, str):
        fail(f"{what}.body must be a string, e.g. \"{{eventId}}:OK\"", path)
    try:
        parts = list(string.Formatter().parse(body))
    except ValueError as exc:
        fail(f"{what}.body is not a template: {exc} (write {{{{ and }}}} for literal braces)", path)
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or spec or conversion or any(c in name for c in ".[]"):
            fail(f"{what}.body: {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                 "is not a placeholder: use {param} with a request parameter's name, or {error}", path)
    return body


# A macro is given per field, for the parameter naming the original of a reversal, and for the
# signature of a scheme whose platform fills it from a macro of the URL we give it (CPX's
# {secure_hash}; the other platforms append theirs).
MACRO_KEYS = (*PROFILE_FIELDS, "reverses", "signature")


def check_macros(value: Any, fail: Fail, prefix: str) -> dict[str, str]:
    table = _table(value, f"{prefix}.macros", ("macros",), fail, MACRO_KEYS)
    for name, macro in table.items():
        if not isinstance(macro, str) or not macro.strip():
            fail(f"{prefix}.macros.{name} must be the platform's macro text, e.g. \"{{subid}}\"", ("macros", name))
    return dict(table)


def check_scheme(value: Any, fail: Fail, prefix: str) -> str:
    if value not in SIGNATURE_SCHEMES:
        fail(f"{prefix}signature_scheme must be one of {', '.join(map(repr, SIGNATURE_SCHEMES))}, got {value!r}",
             ("signature_scheme",))
    return value


def macro_params(profile: PartnerProfile) -> list[tuple[str, str]]:
    """(parameter name, the platform's macro) for each macro of the profile, in field order: the
    query of the postback URL to paste into the platform. A field's parameter is the first name
    the profile reads it by; a macro whose field no parameter reads is left out."""
    out: list[tuple[str, str]] = []
    for key in MACRO_KEYS:
        macro = profile.macros.get(key)
        if macro is None:
            continue
        if key == "reverses":
            names = profile.amounts.reverses
        elif key == "signature":
            names = SIGNATURE_PARAMS.get(profile.signature_scheme, ())
        else:
            names = profile.params.get(key, ())
        if names:
            out.append((names[0], macro))
    return out


def postback_url(profile: PartnerProfile, public_url: str, key: str) -> str:
    """The partner's own postback URL with its platform's macros, ready to paste into the
    platform: public_url + /postback/{key} + ?param=macro&... The macros are written as the
    platform writes them (not percent-encoded), so the platform finds and fills them."""
    base = f"{public_url.rstrip('/')}/postback/{quote(key, safe='')}"
    query = "&".join(f"{quote(name, safe='')}={macro}" for name, macro in macro_params(profile))
    return f"{base}?{query}" if query else base


@dataclass(frozen=True)
class ProfileKeys:
    """What one source (a preset file or a partner entry) sets, validated; absent keys are absent."""

    params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    statuses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    amounts: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    signature_scheme: str | None = None
    macros: dict[str, str] = field(default_factory=dict)


def check_profile_keys(table: Mapping[str, Any], fail: Fail, prefix: str) -> ProfileKeys:
    """The profile keys of a partner entry or a preset file, each validated."""
    return ProfileKeys(
        params=check_params(table["params"], fail, prefix) if "params" in table else {},
        statuses=check_statuses(table["statuses"], fail, prefix) if "statuses" in table else {},
        amounts=check_amounts(table["amounts"], fail, prefix) if "amounts" in table else {},
        answers=check_answers(table["answers"], fail, prefix) if "answers" in table else {},
        signature_scheme=check_scheme(table["signature_scheme"], fail, prefix and prefix + ".")
        if "signature_scheme" in table else None,
        macros=check_macros(table["macros"], fail, prefix) if "macros" in table else {},
    )


# ---------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    name: str
    docs: tuple[str, ...]
    keys: ProfileKeys
    status_updates: bool | None
    path: str


def preset_names() -> tuple[str, ...]:
    """Every preset shipped in receiver/contract/presets/, sorted."""
    return tuple(sorted(entry.name[:-5] for entry in files(PRESETS_PACKAGE).iterdir()
                        if entry.name.endswith(".toml")))


@functools.cache
def load_preset(name: str) -> Preset:
    """The preset file `name`.toml, validated (a ConfigError names the preset file and line)."""
    resource = files(PRESETS_PACKAGE) / f"{name}.toml"
    return parse_preset(name, resource.read_text(encoding="utf-8"), Path(str(resource)))


def parse_preset(name: str, text: str, where: Path) -> Preset:
    """A preset's text, validated: a ConfigError names `where` and the line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {name!r} is not valid TOML: {exc}", path=where) from exc
    locate = TomlLocator(text)

    def fail(message: str, path: tuple[str, ...]) -> NoReturn:
        raise ConfigError(f"preset {name!r}: {message}", path=where, line=locate.line_of_path(None, 0, path))

    for key in raw:
        if key not in PRESET_KEYS:
            fail(f"unknown key {key!r} (known: {', '.join(PRESET_KEYS)})", (key,))
    if raw.get("name") != name:
        fail(f"name must be {name!r} (the file's name), got {raw.get('name')!r}", ("name",))
    docs = raw.get("docs")
    if not isinstance(docs, list) or not docs or not all(
            isinstance(d, str) and d.startswith("https://") for d in docs):
        fail("docs must list the https:// pages of the platform's documentation the preset was built from",
             ("docs",))
    updates = raw.get("status_updates")
    if updates is not None:
        _bool(updates, "status_updates", ("status_updates",), fail)
    keys = check_profile_keys(raw, fail, "")
    merge_statuses([("the seed vocabulary's", DEFAULT_STATUSES), ("the preset's", keys.statuses)], fail)
    return Preset(name, tuple(docs), keys, updates, str(where))


# ---------------------------------------------------------------- resolution


def resolve_profile(entry: Mapping[str, Any], fail: Fail, *, has_secret: bool) -> tuple[PartnerProfile, bool]:
    """A [[partners]] entry's profile (its preset's keys with its own on top, key by key) and its
    status_updates (its own, else its preset's, else false).

    `fail(message, path)` raises the config's error at the line of the partner's key `path`
    (e.g. ("statuses", "approved")). `has_secret`: whether the partner sets signing_secret(_env),
    which a platform signature scheme needs and "none" refuses.
    """
    preset: Preset | None = None
    if "preset" in entry:
        name = entry["preset"]
        known = preset_names()
        if not isinstance(name, str) or name not in known:
            fail(f"unknown preset {name!r} (known: {', '.join(known)})", ("preset",))
        preset = load_preset(name)
    own = check_profile_keys(entry, fail, "partners")
    base = preset.keys if preset is not None else ProfileKeys()
    from_preset = f" (from preset {preset.name!r})" if preset is not None else ""

    chosen = {**DEFAULT_PARAMS, **base.params, **own.params}
    params = {name: chosen.get(name, ()) for name in PROFILE_FIELDS}  # every field, () when none reads it
    layers = [("the seed vocabulary's", DEFAULT_STATUSES), (f"preset {preset.name!r}'s" if preset else "", base.statuses),
              ("its own", own.statuses)]
    statuses = merge_statuses(layers, fail)

    updates = entry.get("status_updates")
    if updates is None:
        updates = bool(preset.status_updates) if preset is not None and preset.status_updates is not None else False
    amounts = AmountFormat(**{**base.amounts, **own.amounts})
    if amounts.negative == "reversal":
        blame = ("amounts", "negative") if "negative" in own.amounts else ("preset",)
        if not amounts.reverses:
            fail('negative = "reversal" needs reverses = ["PARAM"]: the parameter naming the original '
                 f"transaction a reversal takes back{from_preset}", blame)
        if not updates:
            fail('negative = "reversal" books a reversal as a later rejected status: it needs '
                 f"status_updates = true{from_preset}", ("status_updates",) if "status_updates" in entry else blame)

    scheme = own.signature_scheme or base.signature_scheme
    if scheme is None:
        scheme = "clickledger" if has_secret else "none"
    if scheme not in ("none", "clickledger") and not has_secret:
        fail(f"signature_scheme {scheme!r}{from_preset} checks the platform's signature: set signing_secret "
             "(or signing_secret_env) to the secret the platform signs with, or signature_scheme = \"none\" "
             "to accept unsigned postbacks", ("signature_scheme",) if own.signature_scheme else ("preset",))
    if scheme == "none" and has_secret:
        fail('signing_secret is set but signature_scheme = "none": nothing would check it',
             ("signature_scheme",) if own.signature_scheme else ("signing_secret",))

    answers = Answers(**{kind: _answer({**base.answers.get(kind, {}), **own.answers.get(kind, {})})
                         for kind in ANSWERS if kind in base.answers or kind in own.answers})
    profile = PartnerProfile(
        preset=preset.name if preset else None,
        docs=preset.docs if preset else (),
        params=params,
        statuses=statuses,
        amounts=amounts,
        answers=answers,
        signature_scheme=scheme,
        macros={**base.macros, **own.macros},
    )
    return profile, updates


def merge_statuses(layers: list[tuple[str, Mapping[str, tuple[str, ...]]]], fail: Fail) -> dict[str, str]:
    """The platform's value (lower-cased) -> status, from layers of {status: values} where a later
    layer's list replaces an earlier one's for that status. A value in two statuses' lists fails
    at the last layer's key involved."""
    lists: dict[str, tuple[str, tuple[str, ...]]] = {}
    for source, layer in layers:
        for status, values in layer.items():
            lists[status] = (source, values)
    statuses: dict[str, str] = {}
    for status in PROFILE_STATUSES:
        if status not in lists:
            continue
        source, values = lists[status]
        for value in values:
            other = statuses.get(value)
            if other is not None and other != status:
                other_source = lists[other][0]
                last = max(((status, source), (other, other_source)),
                           key=lambda item: [name for name, _ in layers].index(item[1]))
                fail(f"status value {value!r} is mapped twice: to {other} ({other_source} {other} list) and to "
                     f"{status} ({source} {status} list); a value means one status: remove it from one list, or "
                     "set that status's list yourself", ("statuses", last[0]))
            statuses[value] = status
    return statuses


def _answer(keys: dict[str, Any]) -> Answer:
    return Answer(status=keys.get("status"), body=keys.get("body"), content_type=keys.get("content_type", TEXT_PLAIN))
