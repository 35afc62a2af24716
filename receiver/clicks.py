"""Making clicks: tracking links (seed 003) and earn-app task clicks (seed 000).

Redirect targets are built only from configured offer and product URLs, so a
tracking link can never be turned into an open redirect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

from receiver.contract.config import Config, Offer, Product
from receiver.contract.record import CLICK_FIELDS
from receiver.contract.timeutil import format_utc
from receiver.errors import Refusal
from receiver.indexes import Click

MACROS = ("{click_id}", "{clickid}")


@dataclass(frozen=True)
class NewClick:
    click: Click
    fields: dict[str, Any]
    redirect_url: str


def append_query(url: str, params: list[tuple[str, str]], *, replace: bool = False) -> str:
    """`url` with params appended to its query.

    Names the URL already has are kept and not repeated, unless `replace`: then every
    existing pair of such a name is dropped first, so ours are the only ones.
    """
    parts = urlsplit(url)
    names = {k for k, _ in params}
    query = parts.query
    if replace and query:
        query = "&".join(p for p in query.split("&") if unquote_plus(p.split("=", 1)[0]) not in names)
    present = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    extra = urlencode([(k, v) for k, v in params if k not in present], quote_via=quote)
    query = f"{query}&{extra}" if query and extra else (query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _click_fields(click: Click, offer: Offer, redirect_url: str, **origin: str) -> dict[str, Any]:
    """A click's fields: the click, its redirect and the offer's terms now; `origin` is its
    slug (links) or task_url (earn)."""
    share = offer.revenue_share
    return CLICK_FIELDS.new(
        click_id=click.click_id,
        source=click.source,
        offer_id=click.offer_id,
        partner_id=click.partner_id,
        affiliate_id=click.affiliate_id,
        user_id=click.user_id,
        product_id=click.product_id,
        expires_at=format_utc(click.expires_at) if click.expires_at else None,
        redirect_url=redirect_url,
        offer_currency=offer.currency,
        revenue_share_percent=None if share.percent is None else str(share.percent),
        revenue_share_fixed=None if share.fixed is None else str(share.fixed),
        **origin,
    )


def link_click(config: Config, slug: str, click_id: str, now: datetime) -> NewClick | None:
    """The click of a tracking link, or None when its offer is not active (the visitor goes home)."""
    link = config.links.get(slug)
    if link is None:
        raise Refusal("link_not_found", f"no tracking link {slug!r}", fields=CLICK_FIELDS.partial(slug=slug))
    offer = config.offers[link.offer]
    if offer.status != "active":
        return None
    expires = now + timedelta(hours=offer.click_ttl_hours) if offer.click_ttl_hours else None
    click = Click(click_id, "link", offer.id, offer.partner, link.affiliate, None, None, expires)
    url = link_redirect_url(offer.url, offer.id, link.affiliate, click_id)
    return NewClick(click, _click_fields(click, offer, url, slug=slug), url)


@dataclass(frozen=True)
class LinkProbe:
    """What a HEAD of a tracking link answers: where a GET would go, without a click."""

    active: bool
    redirect_url: str


def link_probe(config: Config, slug: str) -> LinkProbe:
    """A tracking link as a link checker sees it (HEAD): the offer URL with our parameters but
    no click id (its click id macros left empty), or the homepage for an inactive offer.
    Nothing is made: no click id exists that a postback could convert."""
    link = config.links[slug]
    offer = config.offers[link.offer]
    if offer.status != "active":
        return LinkProbe(False, config.homepage)
    url = offer.url
    for macro in MACROS:
        url = url.replace(macro, "")
    return LinkProbe(True, append_query(url, [("offer_id", offer.id), ("affiliate_id", link.affiliate)]))


def build_link_url(offer_url: str, offer_id: str, affiliate: str, click_id: str) -> str:
    """A tracking link's redirect: the offer URL, its click id macros filled, our parameters appended."""
    url = offer_url
    for macro in MACROS:
        url = url.replace(macro, quote(click_id, safe=""))
    return append_query(url, [("click_id", click_id), ("offer_id", offer_id), ("affiliate_id", affiliate)])


# A canonical UUID is unreserved text that no URL part parses differently, so a link's
# redirect for one is its redirect for any other with the id swapped: the template (built by
# build_link_url for a stand-in id) saves urlsplit/parse_qsl/urlencode on every click (~25 us).
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STAND_INS = ("0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a", "1b1b1b1b-1b1b-4b1b-9b1b-1b1b1b1b1b1b")
_MAX_TEMPLATES = 1024  # config reloads may leave stale keys: start over past this many
_templates: dict[tuple[str, str, str], str | None] = {}


def _link_template(offer_url: str, offer_id: str, affiliate: str) -> str | None:
    """The redirect for the first stand-in id, or None when the id does not only fill slots in it."""
    first, second = _STAND_INS
    if any(stand_in in text for stand_in in _STAND_INS for text in (offer_url, offer_id, affiliate)):
        return None
    one = build_link_url(offer_url, offer_id, affiliate, first)
    # Two unrelated ids giving the same text where the id goes: the id only fills slots.
    two = build_link_url(offer_url, offer_id, affiliate, second)
    return one if one.replace(first, second) == two and one.count(first) == two.count(second) else None


def link_redirect_url(offer_url: str, offer_id: str, affiliate: str, click_id: str) -> str:
    """build_link_url, from a per-link template when the click id is a canonical UUID (ours always are)."""
    if len(click_id) != 36 or not _UUID_RE.fullmatch(click_id):
        return build_link_url(offer_url, offer_id, affiliate, click_id)
    key = (offer_url, offer_id, affiliate)
    template = _templates.get(key, "")
    if template == "":
        template = _link_template(offer_url, offer_id, affiliate)
        if len(_templates) >= _MAX_TEMPLATES:
            _templates.clear()
        _templates[key] = template
    if template is None:
        return build_link_url(offer_url, offer_id, affiliate, click_id)
    return template.replace(_STAND_INS[0], click_id)


def is_under(candidate: str, base: str) -> bool:
    """True when `candidate` is `base` or a page below it: same scheme and host, path inside base's path.

    Whitespace, control characters, backslashes and dot segments (`..`, `%2e%2e`) are
    refused: a browser would resolve them to a different place than the text says.
    """
    if "\\" in candidate or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in candidate):
        return False
    try:
        a, b = urlsplit(candidate), urlsplit(base)
    except ValueError:  # e.g. "https://[host/" or a host with a fullwidth "／" (NFKC check): not a URL we serve
        return False
    if a.scheme.lower() != b.scheme.lower() or a.netloc.lower() != b.netloc.lower() or "@" in a.netloc:
        return False
    if any(unquote(segment) in (".", "..") for segment in a.path.split("/")):
        return False
    if b.query and not (a.path == b.path and (a.query == b.query or a.query.startswith(b.query + "&"))):
        return False
    base_path = b.path.rstrip("/")
    return a.path == b.path or a.path == base_path or a.path.startswith(base_path + "/")


def earn_click(config: Config, product: Product, user_id: str, task_url: str | None, click_id: str,
               now: datetime) -> NewClick:
    task_url = product.task_url if task_url is None else task_url
    if not isinstance(task_url, str) or not is_under(task_url, product.task_url):
        raise Refusal("invalid_task_url", f"taskUrl must start with this product's task URL {product.task_url}",
                      fields=CLICK_FIELDS.partial(product_id=product.id, user_id=user_id))
    offer = config.offers[product.offer]
    expires = now + timedelta(hours=product.click_ttl_hours)
    click = Click(click_id, "earn", offer.id, offer.partner, None, user_id, product.id, expires)
    postback_url = f"{config.public_url}/api/v1/earn/postback?click_id={quote(click_id, safe='')}"
    # taskUrl comes from the app: a click_id or postback_url it carries must not override ours.
    url = append_query(task_url, [("click_id", click_id), ("postback_url", postback_url)], replace=True)
    return NewClick(click, _click_fields(click, offer, url, task_url=task_url), url)
