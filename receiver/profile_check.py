"""Reading a sample postback URL through a partner's profile, without recording anything.

`read_sample` runs the receiver's own decision (`receiver.postbacks.decide_profile_postback`)
over the URL's parameters, with no click index and nothing written: what each field read, how the
status maps, what was ignored, which values are macros the platform left unfilled, whether the
signature holds, and whether the receiver would refuse the postback for a reason the partner can
fix (the click itself is not looked up). `clickledger partner check` prints it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from receiver.contract.config import Config, Partner, key_digest
from receiver.contract.macros import find_macro
from receiver.contract.params import param_text
from receiver.contract.profiles import PROFILE_DIALECT, PROFILE_FIELDS
from receiver.errors import Refusal
from receiver.indexes import ClickIndex
from receiver.postbacks import PostbackInput, decide_profile_postback, profile_signature_failure
from receiver.signatures import SignedRequest

# Schemes whose signature travels in headers a URL cannot carry.
HEADER_SCHEMES = ("clickledger", "ayet")


@dataclass(frozen=True)
class FieldReading:
    field: str
    names: tuple[str, ...]  # the parameters the profile reads it by, first present wins
    param: str | None  # the one the sample sent, or None
    value: str | None


@dataclass(frozen=True)
class SampleReading:
    partner_id: str
    preset: str | None
    path_note: str | None  # when the URL's path is not this partner's /postback/{key}
    readings: tuple[FieldReading, ...]
    status_raw: str | None
    status: str | None  # what the profile maps it to: approved, pending, rejected, test or unknown
    statuses: dict[str, str]  # the profile's mapping (platform value -> status)
    fields: dict[str, Any]  # the postback fields as the receiver decided them
    ignored: dict[str, Any]  # parameters no field reads (custom_data of the record)
    macros: tuple[tuple[str, str, str], ...]  # (parameter, value, the macro in it)
    signature: str  # what the signature check says
    signature_failed: bool  # a signature the URL carries (or lacks) that the receiver would refuse
    refusal: tuple[str, str] | None  # (code, message) the receiver would answer, the click aside

    @property
    def clean(self) -> bool:
        """Whether the sample reads as a postback the receiver would accept (its click aside)."""
        return self.refusal is None and not self.macros and self.path_note is None and not self.signature_failed


def query_params(query: str) -> dict[str, Any]:
    """The parameters of a query string as the receiver keeps them: a repeated name's values as a list."""
    params: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in params:
            previous = params[name]
            params[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[name] = value
    return params


def _path_note(path: str, partner: Partner) -> str | None:
    prefix = "/postback/"
    if not path.startswith(prefix) or "/" in path[len(prefix):]:
        return f"the URL's path is {path or '/'!r}: this partner's postbacks go to /postback/{{its api key}}"
    key = unquote(path[len(prefix):])
    if partner.api_key_sha256 is None or key_digest(key) != partner.api_key_sha256:
        return "the key in the URL's path is not this partner's api key: the receiver would answer invalid_api_key"
    return None


def _signature(partner: Partner, data: PostbackInput, now: datetime) -> tuple[str, bool]:
    """What the signature check says, and whether it fails."""
    profile = partner.profile
    assert profile is not None
    scheme = profile.signature_scheme
    if scheme == "none":
        return "none (the key in the URL authenticates the postback)", False
    if scheme in HEADER_SCHEMES:
        return f"{scheme}: signed in request headers, which a URL does not carry (not checked)", False
    failure = profile_signature_failure(dataclasses.replace(partner, allowed_ips=None), profile, data, now)
    if failure is None:
        return f"{scheme}: valid", False
    return f"{scheme}: {failure[0]} ({failure[1]})", True


def read_sample(partner: Partner, url: str, config: Config, now: datetime) -> SampleReading:
    """How `partner`'s profile reads the postback `url`; ValueError when the partner has none."""
    profile = partner.profile
    if profile is None:
        raise ValueError(f"partner {partner.id!r} has no preset or profile")
    # No fragment: a "#" here is a macro left unfilled (CAKE's #s2#), to be reported, not dropped.
    parts = urlsplit(url.strip(), allow_fragments=False)
    params = query_params(parts.query)
    bases = tuple(dict.fromkeys(b for b in (f"{parts.scheme}://{parts.netloc}" if parts.netloc else "",
                                            config.public_url.rstrip("/")) if b))
    data = PostbackInput(PROFILE_DIALECT, params, path_key=unquote(parts.path.rsplit("/", 1)[-1]) or None,
                         partner=partner, signed=SignedRequest(params, parts.query, parts.path, bases))
    signature, signature_failed = _signature(partner, data, now)
    # The decision itself, with the signature and address checks off (reported above) and no
    # clicks: it reads every field, then stops at the click lookup.
    unchecked = dataclasses.replace(partner, allowed_ips=None, signing_secret=None,
                                    profile=dataclasses.replace(profile, signature_scheme="none"))
    refusal: tuple[str, str] | None = None
    try:
        decision = decide_profile_postback(dataclasses.replace(data, partner=unchecked), config, ClickIndex(), now)
        fields, ignored = decision.fields, decision.custom_data
    except Refusal as exc:
        fields, ignored = dict(exc.fields or {}), dict(exc.custom_data or {})
        if exc.code != "click_not_found":
            refusal = (exc.code, exc.message)
    readings = []
    for name in PROFILE_FIELDS:
        names = profile.params.get(name, ())
        param = next((n for n in names if n in params), None)
        value = param_text(params[param][0] if isinstance(params[param], list) else params[param]) \
            if param is not None else None
        readings.append(FieldReading(name, names, param, value))
    macros = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            text = param_text(item) or ""
            if (macro := find_macro(text)) is not None:
                macros.append((name, text, macro))
    return SampleReading(
        partner_id=partner.id, preset=profile.preset, path_note=_path_note(parts.path, partner),
        readings=tuple(readings), status_raw=fields.get("status_raw"), status=fields.get("status"),
        statuses=dict(profile.statuses), fields=fields, ignored=ignored, macros=tuple(macros),
        signature=signature, signature_failed=signature_failed, refusal=refusal)
