"""The config model: partners, offers, tracking links, earn products and users.

What DATA/config.toml holds once read and validated (receiver.contract.config_file),
as the receiver decides requests with it and the pipeline derives tables with it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from receiver.contract.addresses import IPNetwork, in_networks, parse_address

if TYPE_CHECKING:
    from receiver.contract.profiles import PartnerProfile

CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# The currency of a config without base_currency, and of an offer without currency.
DEFAULT_CURRENCY = "USD"
DEFAULT_HOMEPAGE = "https://network.example/"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
OFFER_STATUSES = ("active", "paused", "pending")
# Who may read GET /metrics when the config does not say (metrics_allowed_ips): this machine only.
DEFAULT_METRICS_ALLOWED_IPS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
POSTBACK_AUTH = ("key", "none")
# What a publisher's postback endpoint can be told about a conversion (docs/forwarding.md):
# `rejected` is a conversion refused before it was ever approved, `reversed` one taken back
# after its approval.
FORWARD_EVENTS = ("pending", "approved", "rejected", "reversed")
FORWARD_METHODS = ("GET", "POST")
# The macros of a publisher postback URL; `{custom.NAME}` is any custom_data key of the click.
FORWARD_MACROS = ("click_id", "transaction_id", "status", "event", "payout", "payout_base", "currency",
                  "points", "offer_id", "campaign_id", "user_id", "sub1", "sub2", "sub3", "sub4", "sub5",
                  "delivery_id")
CUSTOM_MACRO_PREFIX = "custom."


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file and line."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = f"{path}" if path else "config"
        if line:
            where += f", line {line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RevenueShare:
    """What the affiliate or user gets: a percent of the amount, or a fixed amount in the offer's currency."""

    percent: Decimal | None = None
    fixed: Decimal | None = None


@dataclass(frozen=True)
class Partner:
    id: str
    api_key_sha256: bytes | None
    postback_auth: str = "key"
    status_updates: bool = False
    # None: any address may post for this partner's clicks; else only these networks.
    allowed_ips: tuple[IPNetwork, ...] | None = None
    # Set: every postback for this partner must be signed: X-Signature / X-Timestamp (HMAC-SHA256),
    # or with a profile its signature_scheme's own signature (receiver/signatures.py).
    signing_secret: bytes | None = field(default=None, repr=False)
    # None: a partner of the seed dialects, exactly as before profiles. Else how its own
    # `/postback/{key}` URL reads, checks and answers its platform's postbacks
    # (receiver.contract.profiles).
    profile: PartnerProfile | None = field(default=None, compare=False)

    def ip_allowed(self, client_ip: str | None) -> bool:
        if self.allowed_ips is None:
            return True
        return in_networks(parse_address(client_ip), self.allowed_ips)


@dataclass(frozen=True)
class Offer:
    id: str
    partner: str
    status: str
    url: str
    currency: str
    revenue_share: RevenueShare
    click_ttl_hours: float | None = None


@dataclass(frozen=True)
class Link:
    slug: str
    offer: str
    affiliate: str


@dataclass(frozen=True)
class Product:
    id: str
    offer: str
    task_url: str
    click_ttl_hours: float = 24.0


@dataclass(frozen=True)
class User:
    id: str
    token: str


@dataclass(frozen=True)
class SurveyCampaign:
    """One [[survey_campaigns]] entry: a partner's survey ids mapped to one of our offers (a campaign).

    Exactly one of `survey_id` (an exact id), `pattern` (a case-sensitive glob: * ? [...]) and
    `default` (the partner's campaign for any other survey id) is set.
    """

    partner: str
    campaign_id: str
    survey_id: str | None = None
    pattern: str | None = None
    default: bool = False
    # where the entry stands in config.toml (for the advice on an unmapped survey id)
    line: int | None = field(default=None, compare=False)

    @property
    def match(self) -> str:
        """How it matches: `exact`, `pattern` or `default` (conversions.campaign_match)."""
        return "exact" if self.survey_id is not None else "pattern" if self.pattern is not None else "default"


@dataclass(frozen=True)
class PublisherPostback:
    """One postback endpoint of an affiliate (or earn-app publisher): what the forwarder
    sends it (pipeline.forwarding). `url` holds macros, validated when the config loads."""

    url: str
    method: str = "GET"
    events: tuple[str, ...] = ("approved", "reversed")
    # Set: Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature) signed
    # with this key (the bytes after `whsec_`, base64-decoded).
    signing_secret: bytes | None = field(default=None, repr=False)
    line: int | None = None  # where it is defined in config.toml, for messages

    @property
    def endpoint_id(self) -> str:
        """Stable id of the endpoint: a hash of its method and URL template (secrets never shown)."""
        return hashlib.sha256(f"{self.method}\x1f{self.url}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Affiliate:
    """A publisher we forward conversions to: the `affiliate` of tracking links, or for earn
    clicks (which have no affiliate) the earn product's id."""

    id: str
    points_per_unit: Decimal | None = None  # points per 1.00 of base currency paid to it
    postbacks: tuple[PublisherPostback, ...] = ()


@dataclass(frozen=True)
class Config:
    base_currency: str = DEFAULT_CURRENCY
    homepage: str = DEFAULT_HOMEPAGE
    public_url: str = DEFAULT_PUBLIC_URL
    partners: dict[str, Partner] = field(default_factory=dict)
    offers: dict[str, Offer] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    path: Path | None = None
    trusted_proxies: tuple[IPNetwork, ...] = ()
    survey_campaigns: tuple[SurveyCampaign, ...] = ()
    metrics_allowed_ips: tuple[IPNetwork, ...] = DEFAULT_METRICS_ALLOWED_IPS
    affiliates: dict[str, Affiliate] = field(default_factory=dict)
    # Loopback, private and link-local publisher endpoints are refused unless this is true.
    allow_private_targets: bool = False

    def __post_init__(self) -> None:
        # Lookup tables derived once per load, never per request.
        by_digest = {p.api_key_sha256: p for p in self.partners.values() if p.api_key_sha256}
        by_token = {u.token: u for u in self.users.values()}
        object.__setattr__(self, "_partners_by_key_digest", by_digest)
        object.__setattr__(self, "_users_by_token", by_token)
        surveys: dict[str, list[SurveyCampaign]] = {}
        for entry in self.survey_campaigns:
            surveys.setdefault(entry.partner, []).append(entry)
        object.__setattr__(self, "_survey_campaigns_by_partner", surveys)

    def survey_entries(self, partner_id: str | None) -> list[SurveyCampaign]:
        """The partner's [[survey_campaigns]] entries, in file order (none: it maps no survey ids)."""
        return self._survey_campaigns_by_partner.get(partner_id or "", [])  # type: ignore[attr-defined]

    def campaign_for(self, partner_id: str | None, survey_id: str) -> SurveyCampaign | None:
        """The entry mapping this partner's survey id: its exact id, else the first pattern (in file
        order) that matches, else its default; None when the partner has none of them."""
        entries = self.survey_entries(partner_id)
        for entry in entries:
            if entry.survey_id == survey_id:
                return entry
        for entry in entries:
            if entry.pattern is not None and fnmatchcase(survey_id, entry.pattern):
                return entry
        return next((entry for entry in entries if entry.default), None)

    def partner_for_key(self, key: str) -> Partner | None:
        """The partner owning this api key, compared in constant time."""
        return self.partner_for_digest(key_digest(key))

    def partner_for_digest(self, digest: bytes) -> Partner | None:
        """The partner whose api key has this SHA-256 digest (see `key_digest`)."""
        partner = self._partners_by_key_digest.get(digest)  # type: ignore[attr-defined]
        if partner is not None and hmac.compare_digest(digest, partner.api_key_sha256 or b""):
            return partner
        return None

    def user_for_token(self, token: str) -> User | None:
        user = self._users_by_token.get(token)  # type: ignore[attr-defined]
        if user is not None and hmac.compare_digest(user.token.encode(), token.encode()):
            return user
        return None

    def client_ip(self, remote_addr: str | None, forwarded_for: str | None) -> str | None:
        """The address a postback came from: REMOTE_ADDR, unless that is one of our trusted proxies.

        Behind a trusted proxy it is the right-most X-Forwarded-For entry that is not itself a
        trusted proxy (entries to its left are written by the client and can be forged). A
        forwarded header from any other peer is ignored: anyone can send one.
        """
        if not forwarded_for or not in_networks(parse_address(remote_addr), self.trusted_proxies):
            return remote_addr
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not in_networks(parse_address(hop), self.trusted_proxies):
                return hop
        return hops[0] if hops else remote_addr

    def metrics_allowed(self, remote_addr: str | None, forwarded_for: str | None) -> bool:
        """Whether this client may read GET /metrics: its address (as `client_ip` finds it, so behind
        a trusted proxy the real client's) is within metrics_allowed_ips."""
        return in_networks(parse_address(self.client_ip(remote_addr, forwarded_for)), self.metrics_allowed_ips)

    @property
    def any_public_partner(self) -> bool:
        return any(p.postback_auth == "none" for p in self.partners.values())


def key_digest(key: str) -> bytes:
    """SHA-256 of an api key: what partners are looked up by, and what fingerprints are cut from."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def key_fingerprint(digest: bytes) -> str:
    """Enough of the key's hash (`key_digest`) for support to tell keys apart, never the key itself:
    postbacks' `key_fingerprint`, and what derived tables show in a key's place (pipeline.secrets)."""
    return digest.hex()[:12]
