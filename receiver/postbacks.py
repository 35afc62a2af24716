"""Deciding a postback: dialect parameters in, normalised fields (or a Refusal) out.

Pure logic: no I/O, no clock of its own. The checks run in the order a partner can
act on: a bad key first, then the key's partner's address allowlist and signature,
then the connectivity test, the click id, its values, the click, its owner (and the
owner's allowlist and signature), the campaign and the expiry.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from receiver.contract.config import Config, Partner, key_digest, key_fingerprint
from receiver.contract.macros import find_macro
from receiver.contract.params import (
    ParamError,
    click_id_shape,
    normalise_status,
    split_params,
    vocabulary_for,
)
from receiver.contract.profiles import PROFILE_DIALECT, PartnerProfile, status_for
from receiver.contract.record import POSTBACK_FIELDS
from receiver.contract.timeutil import format_utc
from receiver.errors import Refusal
from receiver.indexes import ClickIndex
from receiver.params import parse_amount, parse_currency, parse_profile_amount
from receiver.signatures import SignedRequest, platform_signature_failure, signature_present

# What to check, by what the unknown click id looks like (receiver.contract.params.click_id_shape):
# only an unfilled macro is a macro problem; a well-formed UUID points at where the click came from.
_CLICK_NOT_FOUND = {
    "macro": "no click with this id: {sent} is a macro your tracker sent unfilled; use the macro your "
             "platform documents for the click id we passed",
    "malformed": "no click with this id: {sent} is not a click id we issue (ours are UUIDs); send back the "
                 "click_id our redirect gave, unchanged (not cut, re-encoded or another parameter's value)",
    "uuid": "no click with this id: it is a well-formed click id, but not one we issued: the click was not "
            "made through our tracking link, or the id comes from another network or environment; send the "
            "click_id our redirect gave",
}


def click_not_found_message(click_id: str) -> str:
    """The click_not_found message for a non-empty click id no click of ours has."""
    return _CLICK_NOT_FOUND[click_id_shape(click_id)].format(sent=repr(click_id[:40]))


# A signed postback's X-Timestamp may differ from our clock by at most this much, either way.
SIGNATURE_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class PostbackInput:
    dialect: str
    params: dict[str, Any]
    header_key: str | None = None
    path_key: str | None = None
    client_ip: str | None = None  # Config.client_ip: REMOTE_ADDR, or X-Forwarded-For via a proxy
    signature: str | None = None  # the X-Signature header, "sha256=<hex>"
    timestamp: str | None = None  # the X-Timestamp header, unix seconds
    signed_request: bytes = b""  # "{METHOD}.{path}?{query}." + body: what follows "{timestamp}."
    # the "profile" dialect: the partner whose path key chose its profile, and what a platform
    # signature covers (receiver.signatures)
    partner: Partner | None = None
    signed: SignedRequest = SignedRequest({})


def signing_message(timestamp: str, method: str, path: str, query: str, body: bytes) -> bytes:
    """The exact bytes a partner signs with HMAC-SHA256 (docs/endpoints.md, Authentication).

    `{timestamp}.{METHOD}.{path}?{query}.{body}`: the path and raw query string as sent
    (UTF-8), the raw body bytes (empty for a GET). Binding method, path, query and body
    means a captured signature cannot be reused for different parameters or another route.
    """
    return f"{timestamp}.".encode() + request_part(method, path, query, body)


def request_part(method: str, path: str, query: str, body: bytes) -> bytes:
    return f"{method.upper()}.{path}?{query}.".encode("utf-8", "surrogateescape") + body


def sign(secret: str | bytes, message: bytes) -> str:
    """The X-Signature value for `message`: "sha256=" + lowercase hex HMAC-SHA256."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def signature_failure(partner: Partner, data: PostbackInput, now: datetime
                      ) -> tuple[str, str] | None:
    """(code, message) when the request is not signed as `partner` requires, else None.

    The HMAC is checked before the clock, so only an authentic request learns that its
    timestamp is out of the window, and a wrong secret always reads invalid_signature.
    """
    if partner.signing_secret is None:
        return None
    if not data.signature or not data.timestamp:
        return ("signature_required",
                "this partner signs postbacks: send X-Signature and X-Timestamp")
    timestamp = data.timestamp.strip()
    message = f"{timestamp}.".encode("utf-8", "replace") + data.signed_request
    expected = sign(partner.signing_secret, message)
    given = data.signature.strip()
    if given[:7].lower() == "sha256=":
        given = "sha256=" + given[7:].lower()
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        return ("invalid_signature",
                "X-Signature is not the HMAC-SHA256 of this request (see docs/endpoints.md, Authentication)")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return ("invalid_signature", "X-Timestamp must be unix seconds")
    skew = now.timestamp() - int(timestamp)
    if abs(skew) > SIGNATURE_WINDOW_SECONDS:
        return ("signature_expired", f"X-Timestamp is {abs(skew):.0f} s from our clock "
                                     f"(at most {SIGNATURE_WINDOW_SECONDS} s)")
    return None


def auth_failure(partner: Partner, data: PostbackInput, now: datetime) -> tuple[str, str] | None:
    """The partner's own rules beyond the key: its address allowlist first, then its signature."""
    if not partner.ip_allowed(data.client_ip):
        return ("ip_not_allowed",
                f"postbacks for partner {partner.id!r} are not accepted from {data.client_ip}")
    return signature_failure(partner, data, now)


@dataclass(frozen=True)
class Decision:
    """An accepted postback: `result` is "test", or "conversion" until dedup decides recorded/duplicate.

    `reversal`: the postback takes back the conversion of its key (a profile's negative amount):
    it is answered as a duplicate of that conversion, and refused when there is none.
    """

    result: str
    fields: dict[str, Any]
    custom_data: dict[str, Any]
    reversal: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.fields["click_id"], self.fields["transaction_id"])


def decide_postback(data: PostbackInput, config: Config, clicks: ClickIndex, now: datetime) -> Decision:
    if data.dialect == PROFILE_DIALECT:
        return decide_profile_postback(data, config, clicks, now)
    raw, custom = split_params(data.params, vocabulary_for(data.dialect))
    key, key_source = None, None
    for source, value in (("path", data.path_key), ("header", data.header_key), ("param", raw["api_key"])):
        if value:
            key, key_source = value, source
            break
    digest = key_digest(key) if key is not None else None
    status_raw = raw["status"] if raw["status"] else None
    # every key of a postback's fields, in the contract's order: the rest are filled below
    fields = POSTBACK_FIELDS.new(
        dialect=data.dialect,
        click_id=raw["click_id"] or None,
        status_raw=status_raw,
        status=normalise_status(status_raw),
        commission_sent=bool(raw["commission"]),
        campaign_id=raw.get("campaign_id"),
        key_present=key is not None,
        key_source=key_source,
        key_fingerprint=key_fingerprint(digest) if digest is not None else None,
        client_ip=data.client_ip,
        signature_present=bool(data.signature),
    )

    note_repeated(fields, data.params)

    def refuse(code: str, message: str) -> Refusal:
        return Refusal(code, message, fields=fields, custom_data=custom)

    key_partner: Partner | None = None
    if key is not None:
        key_partner = config.partner_for_digest(digest)  # type: ignore[arg-type]
        if key_partner is None:
            raise refuse("invalid_api_key", "this api key belongs to no partner (wrong, or regenerated)")
        fields["key_partner_id"] = key_partner.id
        # A test postback with a valid key must still come from an allowed address, signed.
        if failure := auth_failure(key_partner, data, now):
            raise refuse(*failure)
    if fields["status"] == "test" and key_partner is not None:
        return Decision("test", fields, custom)

    click_id = fields["click_id"]
    if not click_id:
        raise refuse("click_id_required", "send the click id as click_id (or cid)")
    fields["transaction_id"] = raw["transaction_id"] or click_id
    fields["transaction_id_source"] = "param" if raw["transaction_id"] else "default"
    # A seed dialect's unknown click id stays click_not_found (the seeds' contract), macro or not.
    if macro := unfilled_macro(data.params, vocabulary_for(data.dialect), MONEY_FIELDS):
        raise refuse(*macro_refusal(fields, *macro))
    try:
        fields["amount"] = parse_amount(raw["amount"] or "0", "invalid_amount", "amount")
        fields["commission"] = parse_amount(raw["commission"] or "0", "invalid_commission", "commission")
        if raw["currency"]:
            fields["currency"], fields["currency_source"] = parse_currency(raw["currency"]), "param"
    except ParamError as exc:
        raise refuse(exc.code, str(exc)) from None
    return _with_click(Decision("conversion", fields, custom), data, config, clicks, now, key_partner, refuse)


def _with_click(decision: Decision, data: PostbackInput, config: Config, clicks: ClickIndex, now: datetime,
                key_partner: Partner | None, refuse: Callable[[str, str], Refusal]) -> Decision:
    """The checks every dialect makes once its parameters are read: the click, its owner (and the
    owner's allowlist and signature), the campaign, the expiry; then the currency's default."""
    fields = decision.fields
    click_id = fields["click_id"]
    click = clicks.get(click_id)
    if click is None:
        if key_partner is None and not config.any_public_partner:
            raise refuse("api_key_required", "send your api_key (or the X-API-Key header)")
        raise refuse("click_not_found", click_not_found_message(click_id))
    fields.update(
        partner_id=click.partner_id, offer_id=click.offer_id, affiliate_id=click.affiliate_id,
        user_id=click.user_id, product_id=click.product_id, click_source=click.source,
    )
    partner = config.partners.get(click.partner_id) or Partner(click.partner_id, None)
    fields["status_updates"] = partner.status_updates
    if key_partner is not None and key_partner.id != partner.id:
        raise refuse("invalid_api_key", "this api key belongs to a partner that does not own the click's offer")
    if key_partner is None and partner.postback_auth == "key":
        raise refuse("api_key_required", "send your api_key (or the X-API-Key header)")
    if key_partner is None and (failure := auth_failure(partner, data, now)):
        raise refuse(*failure)  # a public partner's click: its allowlist and signature still apply
    if fields["status"] == "test":
        return Decision("test", fields, decision.custom_data)
    if data.dialect == "advertiser":
        if not fields["campaign_id"]:
            raise refuse("campaign_id_required", "send campaign_id exactly as your postback URL gives it")
        if fields["campaign_id"] != click.offer_id:
            raise refuse("campaign_mismatch", "campaign_id is not the campaign of this click")
    if click.expires_at is not None and now > click.expires_at:
        raise refuse("click_expired", f"the click expired at {format_utc(click.expires_at, micros=False)}")
    if fields["currency"] is None:
        offer = config.offers.get(click.offer_id)
        # an offer no longer configured: the config's base currency, as for any amount without one
        fields["currency"] = offer.currency if offer else config.base_currency
        fields["currency_source"] = "offer" if offer else "default"
    return decision


# ---------------------------------------------------------------- partner profiles


def note_repeated(fields: dict[str, Any], params: dict[str, Any]) -> None:
    """Name in the record the parameters sent more than once (their values are in custom_data):
    the pipeline lists those whose values differ (`repeated_parameter`)."""
    repeated = getattr(params, "repeated", None)
    if repeated:
        fields["repeated_params"] = orjson.dumps(list(repeated)).decode()


# The fields a postback is refused for when they hold an unfilled macro: without a real value no
# conversion can be booked right (a macro elsewhere is only listed, by the pipeline).
MONEY_FIELDS = ("amount", "commission", "currency")


def unfilled_macro(params: dict[str, Any], vocabulary: dict[str, tuple[str, ...]], names: tuple[str, ...]
                   ) -> tuple[str, str, str] | None:
    """(field, parameter, macro) of the first of the fields `names` whose value (read as the
    vocabulary reads it: its first present parameter) is an unfilled macro, else None."""
    for name in names:
        param, value = _first_present(params, vocabulary.get(name, ()))
        if param is not None and (macro := find_macro(value)) is not None:
            return name, param, macro
    return None


def macro_refusal(fields: dict[str, Any], field: str, param: str, macro: str) -> tuple[str, str]:
    """The unsubstituted_macro refusal of `field`, noted in the record's fields."""
    fields.update(macro_field=field, macro_param=param, macro=macro)
    shown = macro if len(macro) <= 40 else macro[:40] + "..."
    return ("unsubstituted_macro",
            f"{field} (parameter {param!r}) is the unfilled macro {shown!r}: the tracker sent its placeholder "
            f"instead of the value; put the macro your platform documents for the {field.replace('_', ' ')} in "
            "the postback URL")


def _first_present(params: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    """(the first of `names` the request carries, its value), or (None, None)."""
    for name in names:
        if name in params:
            return name, params[name]
    return None, None


def _names(names: tuple[str, ...]) -> str:
    return " or ".join(names) if names else "(no parameter: see [partners.params])"


def profile_signature_failure(partner: Partner, profile: PartnerProfile, data: PostbackInput,
                              now: datetime) -> tuple[str, str] | None:
    """The partner's allowlist, then its profile's signature scheme."""
    if not partner.ip_allowed(data.client_ip):
        return ("ip_not_allowed", f"postbacks for partner {partner.id!r} are not accepted from {data.client_ip}")
    if profile.signature_scheme == "clickledger":
        return signature_failure(partner, data, now)
    if profile.signature_scheme == "none" or partner.signing_secret is None:
        return None
    return platform_signature_failure(profile, partner.signing_secret, data.signed)


def decide_profile_postback(data: PostbackInput, config: Config, clicks: ClickIndex, now: datetime) -> Decision:
    """A postback on the own URL (`/postback/{key}`) of a partner with a profile: its parameters,
    amounts, statuses and signature as its platform sends them (receiver.contract.profiles).

    The status is mapped for the record (an unmapped value is `unknown`), but only the raw
    status is authoritative: the pipeline maps it again with the config of its run. A negative
    amount is refused, or with negative = "reversal" becomes a reversal of the conversion the
    profile's `reverses` parameter names: a rejected status step of that (click_id,
    transaction_id), never a conversion of its own.
    """
    partner = data.partner
    assert partner is not None and partner.profile is not None, "the app routes only profile partners here"
    profile = partner.profile
    raw, custom = split_params(data.params, profile.params)
    amount_param, amount_sent = _first_present(data.params, profile.params.get("amount", ()))
    digest = key_digest(data.path_key or "")
    status_raw = raw["status"] or None
    fields = POSTBACK_FIELDS.new(
        dialect=PROFILE_DIALECT,
        click_id=raw["click_id"] or None,
        status_raw=status_raw,
        status=status_for(status_raw, profile.statuses),
        commission_sent=bool(raw["commission"]),
        key_present=True,
        key_source="path",
        key_fingerprint=key_fingerprint(digest),
        key_partner_id=partner.id,
        client_ip=data.client_ip,
        signature_present=bool(data.signature) if profile.signature_scheme in ("clickledger", "none")
        else signature_present(profile.signature_scheme, data.signed),
        preset=profile.preset,
        sent_user_id=raw["user_id"] or None,
        sent_offer_id=raw["offer_id"] or None,
        survey_id=raw["survey_id"] or None,
        amount_param=amount_param if raw["amount"] else None,
        reversal=False,
    )

    note_repeated(fields, data.params)

    def refuse(code: str, message: str) -> Refusal:
        return Refusal(code, message, fields=fields, custom_data=custom)

    if failure := profile_signature_failure(partner, profile, data, now):
        raise refuse(*failure)
    if fields["status"] == "test":
        return Decision("test", fields, custom)
    click_id = fields["click_id"]
    if not click_id:
        raise refuse("click_id_required", f"send the click id as {_names(profile.params['click_id'])}")
    fields["transaction_id"] = raw["transaction_id"] or click_id
    fields["transaction_id_source"] = "param" if raw["transaction_id"] else "default"
    if macro := unfilled_macro(data.params, profile.params, ("click_id", *MONEY_FIELDS)):
        raise refuse(*macro_refusal(fields, *macro))
    fmt = profile.amounts
    try:
        amount, negative = parse_profile_amount(raw["amount"] or "0", fmt, "invalid_amount", "amount")
        commission, negative_commission = parse_profile_amount(raw["commission"] or "0", fmt, "invalid_commission",
                                                               "commission")
        if raw["currency"]:
            fields["currency"], fields["currency_source"] = parse_currency(raw["currency"]), "param"
    except ParamError as exc:
        raise refuse(exc.code, str(exc)) from None
    _, reverses = _first_present(data.params, fmt.reverses)
    reverses = reverses if isinstance(reverses, str) else None if reverses is None else str(reverses)
    prefixed = bool(fmt.reversal_prefix) and reverses is not None and reverses.startswith(fmt.reversal_prefix)
    if (negative or negative_commission or prefixed) and fmt.negative != "reversal":
        what = "amount" if negative else "commission"
        raise refuse(f"invalid_{what}", f"{what} is negative ({str(amount_sent)[:40]!r}): this partner's profile "
                                        "refuses negative amounts (a platform that reverses conversions with them "
                                        "needs [partners.amounts] negative = \"reversal\")")
    if negative or negative_commission or prefixed:
        original = (reverses or "").strip()
        if prefixed:
            original = original[len(fmt.reversal_prefix):].strip()
        if not original:
            raise refuse("invalid_amount", "a negative amount is a reversal for this partner: name the conversion "
                                           f"it takes back in {_names(fmt.reverses)}")
        fields.update(transaction_id=original, transaction_id_source="reverses", status="rejected", amount=None,
                      commission=None, commission_sent=False, reversal=True,
                      reversal_transaction_id=raw["transaction_id"] or None, reversal_amount=amount)
        decision = Decision("conversion", fields, custom, reversal=True)
    else:
        fields.update(amount=amount, commission=commission)
        decision = Decision("conversion", fields, custom)
    return _with_click(decision, data, config, clicks, now, partner, refuse)
