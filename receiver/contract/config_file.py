"""Reading DATA/config.toml: TOML in, a validated `Config` out, or a ConfigError naming the line.

The file is validated as a whole: unknown keys, missing references and duplicate ids
are refused with a message naming the line, so a typo never silently changes who
gets paid.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from receiver.contract.addresses import IPNetwork, is_private_target, parse_address
from receiver.contract.config import (
    CURRENCY_RE,
    CUSTOM_MACRO_PREFIX,
    DEFAULT_CURRENCY,
    DEFAULT_HOMEPAGE,
    DEFAULT_METRICS_ALLOWED_IPS,
    DEFAULT_PUBLIC_URL,
    FORWARD_EVENTS,
    FORWARD_MACROS,
    FORWARD_METHODS,
    OFFER_STATUSES,
    POSTBACK_AUTH,
    Affiliate,
    Config,
    ConfigError,
    Link,
    Offer,
    Partner,
    Product,
    PublisherPostback,
    RevenueShare,
    SurveyCampaign,
    User,
)
from receiver.contract.profiles import PROFILE_KEYS, resolve_profile
from receiver.contract.toml_lines import TomlLocator, line_of_nested

# The keys a config file may hold: at the top, and in each [[table]] (required, optional).
TOP_KEYS = {"base_currency", "homepage", "public_url", "trusted_proxies", "metrics_allowed_ips", "partners",
            "offers", "links", "products", "users", "survey_campaigns", "affiliates", "allow_private_targets"}
TABLE_KEYS = {
    "partners": ({"id"}, {"api_key", "api_key_sha256", "postback_auth", "status_updates",
                          "allowed_ips", "signing_secret", "signing_secret_env", *PROFILE_KEYS}),
    "offers": ({"id", "partner", "url"}, {"status", "currency", "revenue_share", "click_ttl_hours"}),
    "links": ({"slug", "offer", "affiliate"}, set()),
    "products": ({"id", "offer", "task_url"}, {"click_ttl_hours"}),
    "users": ({"id", "token"}, set()),
    "survey_campaigns": ({"partner", "campaign_id"}, {"survey_id", "pattern", "default"}),
    "affiliates": ({"id"}, {"points_per_unit", "postbacks"}),
}
# The key each table's entries are told apart by (duplicates refused); survey_campaigns are
# checked by what they match (_survey_campaigns).
ID_KEYS = {"links": "slug", "survey_campaigns": None}
SURVEY_MATCH_KEYS = ("survey_id", "pattern", "default")
GLOB_CHARS = "*?["
PUBLISHER_POSTBACK_KEYS = ({"url"}, {"method", "events", "signing_secret", "signing_secret_env"})
MACRO_IN_URL_RE = re.compile(r"\{([^{}]*)\}")
CUSTOM_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
WEBHOOK_SECRET_PREFIX = "whsec_"


def url_macros(url: str) -> list[str]:
    """The macro names of a publisher postback URL, in order (`{sub1}` -> "sub1")."""
    return MACRO_IN_URL_RE.findall(url)


def _known_macro(name: str) -> bool:
    if name in FORWARD_MACROS:
        return True
    custom = name.removeprefix(CUSTOM_MACRO_PREFIX)
    return name.startswith(CUSTOM_MACRO_PREFIX) and bool(CUSTOM_NAME_RE.match(custom))


def webhook_key(secret: bytes) -> bytes:
    """The signing key of a Standard Webhooks secret `whsec_<base64>`: its decoded bytes."""
    import base64
    import binascii

    text = secret.decode("utf-8")
    if not text.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"a signing_secret is `{WEBHOOK_SECRET_PREFIX}` and base64 (Standard Webhooks), "
                         f"e.g. {WEBHOOK_SECRET_PREFIX}{base64.b64encode(bytes(range(24))).decode()}")
    try:
        key = base64.b64decode(text[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the part of signing_secret after `{WEBHOOK_SECRET_PREFIX}` is not base64 "
                         f"({exc})") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"signing_secret must decode to 24 to 64 bytes (Standard Webhooks), got {len(key)}")
    return key


def _publisher_postback(entry: Any, allow_private: bool, fail) -> PublisherPostback:
    """One [[affiliates.postbacks]] entry; `fail(message, key)` raises naming its line."""
    if not isinstance(entry, dict):
        fail("each [[affiliates.postbacks]] entry must be a table", None)
    required, optional = PUBLISHER_POSTBACK_KEYS
    for key in entry:
        if key not in required | optional:
            fail(f"unknown key {key!r} in [[affiliates.postbacks]] (known: "
                 f"{', '.join(sorted(required | optional))})", key)
    if "url" not in entry:
        fail("[[affiliates.postbacks]] entry is missing 'url'", None)
    url = entry["url"]
    if not isinstance(url, str):
        fail("url must be a string", "url")
    for name in url_macros(url):
        if not _known_macro(name):
            fail(f"unknown macro {{{name}}} in url (known: "
                 + ", ".join("{" + m + "}" for m in FORWARD_MACROS)
                 + ", and {custom.NAME} for a custom_data key of the click)", "url")
    bare = MACRO_IN_URL_RE.sub("x", url)
    if "{" in bare or "}" in bare:
        fail("url has a `{` or `}` that is not part of a {macro}", "url")
    _require_url(bare, "url", lambda m: fail(m, "url"))
    parts = urlsplit(url)
    if "{" in parts.scheme + parts.netloc:
        fail("a macro may not stand in the url's scheme, host or port", "url")
    host = parts.hostname or ""
    address = parse_address(host)
    if not allow_private and (host.lower() == "localhost" or host.lower().endswith(".localhost")
                              or (address is not None and is_private_target(address))):
        fail(f"url {parts.scheme}://{parts.netloc} is a loopback, private or link-local address: set "
             "allow_private_targets = true at the top of the file to forward there", "url")
    method = entry.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in FORWARD_METHODS:
        fail(f"method must be one of {FORWARD_METHODS}, got {method!r}", "method")
    events = entry.get("events", ["approved", "reversed"])
    if (not isinstance(events, list) or not events or any(e not in FORWARD_EVENTS for e in events)
            or len(set(events)) != len(events)):
        fail(f"events must be a non-empty list of distinct events of {FORWARD_EVENTS}, got {events!r}",
             "events")
    secret = _signing_secret(entry, fail, 1)
    if secret is not None:
        try:
            webhook_key(secret)
        except ValueError as exc:
            fail(str(exc), "signing_secret_env" if "signing_secret_env" in entry else "signing_secret")
    return PublisherPostback(url, method.upper(), tuple(events), secret)



def _require_url(value: Any, what: str, fail) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n\t\\ "):
        fail(f"{what} must be an absolute http(s) URL without spaces or backslashes")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        fail(f"{what} must be an absolute http(s) URL, got {value!r}")
    return value


def _decimal(value: Any, what: str, fail) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        fail(f"{what} must be a number, got {value!r}")
    if not number.is_finite() or number < 0:
        fail(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def _networks(value: Any, what: str, fail, may_be_empty: bool = False) -> tuple[IPNetwork, ...]:
    """A list of CIDR blocks or single addresses (IPv4 or IPv6); host bits set are refused."""
    if not isinstance(value, list) or (not value and not may_be_empty):
        fail(f"{what} must be a {'' if may_be_empty else 'non-empty '}list of addresses or CIDR blocks, "
             f"e.g. [\"203.0.113.0/24\"]")
    networks = []
    for item in value:
        if not isinstance(item, str):
            fail(f"{what}: {item!r} is not an IP address or CIDR block")
        try:
            networks.append(ipaddress.ip_network(item.strip()))
        except ValueError as exc:
            fail(f"{what}: {item!r} is not an IP address or CIDR block ({exc})")
    return tuple(networks)


# Our own X-Signature scheme's secret is at least this long; a platform's secret is whatever the
# platform issued (a profile's signature_scheme), so only its presence is checked.
MIN_SECRET_CHARS = 16


def _signing_secret(entry: dict[str, Any], fail, min_chars: int = MIN_SECRET_CHARS) -> bytes | None:
    """signing_secret, or the environment variable signing_secret_env names (out of the file)."""
    if "signing_secret" in entry and "signing_secret_env" in entry:
        fail("give signing_secret or signing_secret_env, not both", "signing_secret_env")
    if "signing_secret_env" in entry:
        name = entry["signing_secret_env"]
        if not isinstance(name, str) or not name:
            fail("signing_secret_env must name an environment variable", "signing_secret_env")
        secret = os.environ.get(name, "")
        if not secret:
            fail(f"signing_secret_env names {name!r}, which is not set or empty",
                 "signing_secret_env")
        return secret.encode("utf-8")
    if "signing_secret" in entry:
        secret = entry["signing_secret"]
        if not isinstance(secret, str) or len(secret) < max(min_chars, 1):
            fail(f"signing_secret must be a string of at least {max(min_chars, 1)} characters", "signing_secret")
        return secret.encode("utf-8")
    return None


def parse_config(text: str, path: Path | None = None) -> Config:
    """Parse and validate config text; raises ConfigError naming the line of the first problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        if line is None:  # before Python 3.14 the line is only in the message
            match = re.search(r"at line (\d+)", str(exc))
            line = int(match.group(1)) if match else None
        raise ConfigError(f"not valid TOML: {exc}", path=path, line=line) from exc
    locate = TomlLocator(text)

    def fail_at(message: str, table: str | None = None, index: int = 0, key: str | None = None):
        raise ConfigError(message, path=path, line=locate.line_of(table, index, key))

    for key in raw:
        if key not in TOP_KEYS:
            fail_at(f"unknown key {key!r} (known: {', '.join(sorted(TOP_KEYS))})", None, 0, key)
    base_currency = str(raw.get("base_currency", DEFAULT_CURRENCY)).upper()
    if not CURRENCY_RE.match(base_currency):
        fail_at(f"base_currency must be a 3-letter code, got {base_currency!r}", None, 0, "base_currency")
    homepage = _require_url(raw.get("homepage", DEFAULT_HOMEPAGE), "homepage",
                            lambda m: fail_at(m, None, 0, "homepage"))
    public_url = _require_url(raw.get("public_url", DEFAULT_PUBLIC_URL), "public_url",
                              lambda m: fail_at(m, None, 0, "public_url")).rstrip("/")
    trusted_proxies: tuple[IPNetwork, ...] = ()
    if "trusted_proxies" in raw:
        trusted_proxies = _networks(raw["trusted_proxies"], "trusted_proxies",
                                    lambda m: fail_at(m, None, 0, "trusted_proxies"))
    metrics_allowed_ips = DEFAULT_METRICS_ALLOWED_IPS
    if "metrics_allowed_ips" in raw:  # [] is allowed: nobody may read /metrics
        metrics_allowed_ips = _networks(raw["metrics_allowed_ips"], "metrics_allowed_ips",
                                        lambda m: fail_at(m, None, 0, "metrics_allowed_ips"), may_be_empty=True)

    allow_private = raw.get("allow_private_targets", False)
    if not isinstance(allow_private, bool):
        fail_at("allow_private_targets must be true or false", None, 0, "allow_private_targets")

    tables: dict[str, list[dict[str, Any]]] = {}
    for name, (required, optional) in TABLE_KEYS.items():
        entries = raw.get(name, [])
        if not isinstance(entries, list):
            fail_at(f"{name} must be an array of tables ([[{name}]])", None, 0, name)
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                fail_at(f"[[{name}]] entry {i + 1} must be a table", name, i)
            for key in entry:
                if key not in required | optional:
                    fail_at(f"unknown key {key!r} in [[{name}]] (known: {', '.join(sorted(required | optional))})",
                            name, i, key)
            for key in sorted(required - entry.keys()):
                fail_at(f"[[{name}]] entry {i + 1} is missing {key!r}", name, i)
            for key, value in entry.items():
                if key in ("id", "slug", "offer", "partner", "affiliate", "token", "api_key") and (
                    not isinstance(value, str) or not value.strip()
                ):
                    fail_at(f"{key} must be a non-empty string", name, i, key)
        id_key = ID_KEYS.get(name, "id")
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries if id_key else []):
            ident = entry[id_key]
            if ident in seen:
                fail_at(f"duplicate {name[:-1]} {id_key} {ident!r} (first defined in entry {seen[ident] + 1})",
                        name, i, id_key)
            seen[ident] = i
        tables[name] = entries

    partners: dict[str, Partner] = {}
    for i, e in enumerate(tables["partners"]):
        if "api_key" in e and "api_key_sha256" in e:
            fail_at("give api_key or api_key_sha256, not both", "partners", i, "api_key_sha256")
        digest = None
        if "api_key" in e:
            digest = hashlib.sha256(e["api_key"].encode("utf-8")).digest()
        elif "api_key_sha256" in e:
            try:
                digest = bytes.fromhex(str(e["api_key_sha256"]))
            except ValueError:
                digest = b""
            if len(digest) != 32:
                fail_at("api_key_sha256 must be 64 hex digits", "partners", i, "api_key_sha256")
        auth = e.get("postback_auth", "key")
        if auth not in POSTBACK_AUTH:
            fail_at(f"postback_auth must be one of {POSTBACK_AUTH}, got {auth!r}", "partners", i, "postback_auth")
        if auth == "key" and digest is None:
            fail_at("a partner with postback_auth = \"key\" needs api_key or api_key_sha256", "partners", i)
        updates = e.get("status_updates", False)
        if not isinstance(updates, bool):
            fail_at("status_updates must be true or false", "partners", i, "status_updates")
        allowed = None
        if "allowed_ips" in e:
            allowed = _networks(e["allowed_ips"], "allowed_ips",
                                lambda m, i=i: fail_at(m, "partners", i, "allowed_ips"))
        profile = None
        if any(key in e for key in PROFILE_KEYS):
            if digest is None:
                fail_at("a partner with a profile (preset, params, statuses...) is reached at its own "
                        "/postback/{key} URL: give it api_key or api_key_sha256", "partners", i)

            def fail_in(message: str, key_path: tuple[str, ...], i: int = i):
                raise ConfigError(message, path=path, line=locate.line_of_path("partners", i, key_path))

            profile, updates = resolve_profile(
                e, fail_in, has_secret="signing_secret" in e or "signing_secret_env" in e)
        min_chars = MIN_SECRET_CHARS if profile is None or profile.signature_scheme == "clickledger" else 1
        secret = _signing_secret(e, lambda m, key, i=i: fail_at(m, "partners", i, key), min_chars)
        partners[e["id"]] = Partner(e["id"], digest, auth, updates, allowed, secret, profile)

    def positive_hours(value: Any, table: str, i: int) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            fail_at(f"click_ttl_hours must be a positive number, got {value!r}", table, i, "click_ttl_hours")
        return float(value)

    offers: dict[str, Offer] = {}
    for i, e in enumerate(tables["offers"]):
        if e["partner"] not in partners:
            fail_at(f"offer {e['id']!r} names partner {e['partner']!r}, which is not defined", "offers", i, "partner")
        status = e.get("status", "active")
        if status not in OFFER_STATUSES:
            fail_at(f"status must be one of {OFFER_STATUSES}, got {status!r}", "offers", i, "status")
        url = _require_url(e["url"], "url", lambda m, i=i: fail_at(m, "offers", i, "url"))
        currency = str(e.get("currency", DEFAULT_CURRENCY)).upper()
        if not CURRENCY_RE.match(currency):
            fail_at(f"currency must be a 3-letter code, got {currency!r}", "offers", i, "currency")
        share_raw = e.get("revenue_share", {"percent": 100})
        if not isinstance(share_raw, dict) or len(share_raw) != 1 or not share_raw.keys() <= {"percent", "fixed"}:
            fail_at("revenue_share must be { percent = N } or { fixed = N }", "offers", i, "revenue_share")
        fail_share = lambda m, i=i: fail_at(m, "offers", i, "revenue_share")  # noqa: E731
        if "percent" in share_raw:
            percent = _decimal(share_raw["percent"], "revenue_share.percent", fail_share)
            if percent > 100:
                fail_share("revenue_share.percent must be between 0 and 100")
            share = RevenueShare(percent=percent)
        else:
            share = RevenueShare(fixed=_decimal(share_raw["fixed"], "revenue_share.fixed", fail_share))
        ttl = positive_hours(e["click_ttl_hours"], "offers", i) if "click_ttl_hours" in e else None
        offers[e["id"]] = Offer(e["id"], e["partner"], status, url, currency, share, ttl)

    links: dict[str, Link] = {}
    for i, e in enumerate(tables["links"]):
        if e["offer"] not in offers:
            fail_at(f"link {e['slug']!r} names offer {e['offer']!r}, which is not defined", "links", i, "offer")
        if not re.match(r"^[A-Za-z0-9._~-]+$", e["slug"]):
            fail_at("slug may hold only letters, digits and . _ ~ -", "links", i, "slug")
        links[e["slug"]] = Link(e["slug"], e["offer"], e["affiliate"])

    products: dict[str, Product] = {}
    for i, e in enumerate(tables["products"]):
        if e["offer"] not in offers:
            fail_at(f"product {e['id']!r} names offer {e['offer']!r}, which is not defined", "products", i, "offer")
        task_url = _require_url(e["task_url"], "task_url", lambda m, i=i: fail_at(m, "products", i, "task_url"))
        ttl = positive_hours(e.get("click_ttl_hours", 24), "products", i)
        products[e["id"]] = Product(e["id"], e["offer"], task_url, ttl)

    users: dict[str, User] = {}
    tokens: set[str] = set()
    for i, e in enumerate(tables["users"]):
        if e["token"] in tokens:
            fail_at("two users share this token", "users", i, "token")
        tokens.add(e["token"])
        users[e["id"]] = User(e["id"], e["token"])

    affiliates: dict[str, Affiliate] = {}
    for i, e in enumerate(tables["affiliates"]):
        points = None
        if "points_per_unit" in e:
            if isinstance(e["points_per_unit"], bool):
                fail_at("points_per_unit must be a number", "affiliates", i, "points_per_unit")
            points = _decimal(e["points_per_unit"], "points_per_unit",
                              lambda m, i=i: fail_at(m, "affiliates", i, "points_per_unit"))
        entries = e.get("postbacks", [])
        if not isinstance(entries, list):
            fail_at("postbacks must be an array of tables ([[affiliates.postbacks]])", "affiliates", i, "postbacks")
        postbacks = []
        for j, entry in enumerate(entries):
            def fail_pb(message: str, key: str | None, i: int = i, j: int = j):
                raise ConfigError(message, path=path, line=line_of_nested(locate, "affiliates", i, "postbacks",
                                                                          j, key))
            postback = _publisher_postback(entry, allow_private, fail_pb)
            line = line_of_nested(locate, "affiliates", i, "postbacks", j)
            postbacks.append(PublisherPostback(postback.url, postback.method, postback.events,
                                               postback.signing_secret, line))
        ids = [p.endpoint_id for p in postbacks]
        if len(set(ids)) != len(ids):
            fail_at(f"affiliate {e['id']!r} lists the same method and url twice", "affiliates", i, "postbacks")
        affiliates[e["id"]] = Affiliate(e["id"], points, tuple(postbacks))

    survey_campaigns = _survey_campaigns(tables["survey_campaigns"], partners, offers, fail_at, locate)
    return Config(base_currency, homepage, public_url, partners, offers, links, products, users,
                  path, trusted_proxies, survey_campaigns=survey_campaigns,
                  metrics_allowed_ips=metrics_allowed_ips, affiliates=affiliates,
                  allow_private_targets=allow_private)


def _survey_campaigns(entries: list[dict[str, Any]], partners: dict[str, Partner], offers: dict[str, Offer],
                      fail_at, locate: TomlLocator) -> tuple[SurveyCampaign, ...]:
    """[[survey_campaigns]]: each entry maps one partner's survey ids to one of its offers, by an exact
    `survey_id`, a glob `pattern` or `default = true`; an id, a pattern or a default given twice for a
    partner is refused (which would win could not be seen in the file)."""
    out: list[SurveyCampaign] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, e in enumerate(entries):
        def fail(message: str, key: str | None = None, i: int = i, e: dict[str, Any] = e) -> None:
            fail_at(f"[[survey_campaigns]] entry {i + 1} (partner {e['partner']!r}): {message}",
                    "survey_campaigns", i, key)

        if e["partner"] not in partners:
            fail(f"partner {e['partner']!r} is not defined", "partner")
        given = [key for key in SURVEY_MATCH_KEYS if key in e]
        if len(given) != 1:
            fail("give exactly one of survey_id = \"...\" (an exact id), pattern = \"...\" (a glob such as "
                 f"\"UK-*\") or default = true, got {' and '.join(given) or 'none of them'}", given[1] if len(given) > 1
                 else None)
        match_key = given[0]
        value = e[match_key]
        if match_key == "default":
            if value is not True:
                fail("default must be true (leave it out for an entry that is not the default)", "default")
            value = ""
        elif match_key == "survey_id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # survey_id = 1001 is the id "1001", as partners send it
        elif not isinstance(value, str) or not value.strip():
            fail(f"{match_key} must be a non-empty string, got {value!r}", match_key)
        if match_key == "pattern" and not any(c in value for c in GLOB_CHARS):
            fail(f"pattern {value!r} has no wildcard (* ? [...]): give an exact id as survey_id", "pattern")
        campaign = e["campaign_id"]
        if not isinstance(campaign, str) or campaign not in offers:
            fail(f"campaign_id {campaign!r} is not an offer defined in [[offers]]", "campaign_id")
        if offers[campaign].partner != e["partner"]:
            fail(f"campaign_id {campaign!r} is an offer of partner {offers[campaign].partner!r}, not of "
                 f"{e['partner']!r}", "campaign_id")
        key = (e["partner"], match_key, value)
        if key in seen:
            what = "a default" if match_key == "default" else f"{match_key} {value!r}"
            fail(f"{what} is already mapped for this partner by entry {seen[key] + 1}", match_key)
        seen[key] = i
        out.append(SurveyCampaign(
            e["partner"], campaign,
            survey_id=value if match_key == "survey_id" else None,
            pattern=value if match_key == "pattern" else None,
            default=match_key == "default",
            line=locate.line_of("survey_campaigns", i)))
    return tuple(out)


def load_config(path: str | os.PathLike[str]) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"file not found (make one with `clickledger init --data {path.parent}`)",
                          path=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}", path=path) from exc
    return parse_config(text, path)
