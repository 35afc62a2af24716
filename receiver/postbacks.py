"""Deciding a postback: dialect parameters in, normalised fields (or a Refusal) out.

Pure logic: no I/O, no clock of its own. The checks run in the order a partner can
act on: a bad key first, then the connectivity test, then the click id, its
values, the click, its owner, the campaign and the expiry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.config import Config, Partner
from receiver.errors import Refusal
from receiver.indexes import ClickIndex
from receiver.params import (
    ADVERTISER_VOCABULARY,
    BASE_VOCABULARY,
    ParamError,
    normalise_status,
    parse_amount,
    parse_currency,
    split_params,
)
from receiver.timeutil import format_utc

# route template -> dialect (the seed system it serves)
DIALECTS = {
    "/api/postback": "network",  # seed 003: partner tracking-link guide
    "/postback/{key}": "publisher",  # seed 001: key in the path
    "/postback": "peerclick",  # seed 002: cid, payout, txid, paramN, eventN
    "/postback/advertiser": "advertiser",  # seed 004: ClickWall, campaign_id
    "/api/v1/earn/postback": "earn",  # seed 000: earn app, JSON body
}


@dataclass(frozen=True)
class PostbackInput:
    dialect: str
    params: dict[str, Any]
    header_key: str | None = None
    path_key: str | None = None


@dataclass(frozen=True)
class Decision:
    """An accepted postback: `result` is "test", or "conversion" until dedup decides recorded/duplicate."""

    result: str
    fields: dict[str, Any]
    custom_data: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.fields["click_id"], self.fields["transaction_id"])


def key_fingerprint(key: str) -> str:
    """Enough of the key's hash for support to tell keys apart, never the key itself."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def decide_postback(data: PostbackInput, config: Config, clicks: ClickIndex, now: datetime) -> Decision:
    vocabulary = ADVERTISER_VOCABULARY if data.dialect == "advertiser" else BASE_VOCABULARY
    raw, custom = split_params(data.params, vocabulary)
    key, key_source = None, None
    for source, value in (("path", data.path_key), ("header", data.header_key), ("param", raw["api_key"])):
        if value:
            key, key_source = value, source
            break
    status_raw = raw["status"] if raw["status"] else None
    fields: dict[str, Any] = {
        "dialect": data.dialect,
        "click_id": raw["click_id"] or None,
        "transaction_id": None,
        "transaction_id_source": None,
        "status_raw": status_raw,
        "status": normalise_status(status_raw),
        "amount": None,
        "commission": None,
        "commission_sent": bool(raw["commission"]),
        "currency": None,
        "currency_source": None,
        "campaign_id": raw.get("campaign_id"),
        "key_present": key is not None,
        "key_source": key_source,
        "key_fingerprint": key_fingerprint(key) if key else None,
        "key_partner_id": None,
        "partner_id": None,
        "offer_id": None,
        "affiliate_id": None,
        "user_id": None,
        "product_id": None,
        "click_source": None,
        "status_updates": None,
    }

    def refuse(code: str, message: str) -> Refusal:
        return Refusal(code, message, fields=fields, custom_data=custom)

    key_partner: Partner | None = None
    if key is not None:
        key_partner = config.partner_for_key(key)
        if key_partner is None:
            raise refuse("invalid_api_key", "this api key belongs to no partner (wrong, or regenerated)")
        fields["key_partner_id"] = key_partner.id
    if fields["status"] == "test" and key_partner is not None:
        return Decision("test", fields, custom)

    click_id = fields["click_id"]
    if not click_id:
        raise refuse("click_id_required", "send the click id as click_id (or cid)")
    fields["transaction_id"] = raw["transaction_id"] or click_id
    fields["transaction_id_source"] = "param" if raw["transaction_id"] else "default"
    try:
        fields["amount"] = parse_amount(raw["amount"] or "0", "invalid_amount", "amount")
        fields["commission"] = parse_amount(raw["commission"] or "0", "invalid_commission", "commission")
        if raw["currency"]:
            fields["currency"], fields["currency_source"] = parse_currency(raw["currency"]), "param"
    except ParamError as exc:
        raise refuse(exc.code, str(exc)) from None

    click = clicks.get(click_id)
    if click is None:
        if key_partner is None and not config.any_public_partner:
            raise refuse("api_key_required", "send your api_key (or the X-API-Key header)")
        raise refuse("click_not_found", "no click with this id: check the macro that fills it")
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
    if fields["status"] == "test":
        return Decision("test", fields, custom)
    if data.dialect == "advertiser":
        if not fields["campaign_id"]:
            raise refuse("campaign_id_required", "send campaign_id exactly as your postback URL gives it")
        if fields["campaign_id"] != click.offer_id:
            raise refuse("campaign_mismatch", "campaign_id is not the campaign of this click")
    if click.expires_at is not None and now > click.expires_at:
        raise refuse("click_expired", f"the click expired at {format_utc(click.expires_at, micros=False)}")
    if fields["currency"] is None:
        offer = config.offers.get(click.offer_id)
        fields["currency"] = offer.currency if offer else "USD"
        fields["currency_source"] = "offer" if offer else "default"
    return Decision("conversion", fields, custom)
