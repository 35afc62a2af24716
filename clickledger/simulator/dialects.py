"""Each seed system's postback in its own words: the parameter names, the places they go
(query, form or JSON body, header) and the habits (aliases, extras, user agents) of the
partners that send it. The planner decides what a postback says; this puts it in words."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from clickledger.simulator.steps import CLICK, DIALECT_PATHS, EARN_POSTBACK, Target

# Paths a partner mistypes or keeps after a move: the receiver answers them not_found.
WRONG_PATHS = {
    "network": ("/postback-old", "/api/postbacks", "/api/v2/postback"),
    "publisher": ("/postbacks/{key}", "/postback-old/{key}"),
    "peerclick": ("/postback-old", "/pstb/postback"),
    "advertiser": ("/postback-old/advertiser", "/advertiser/postback"),
    "earn": ("/api/v1/earn/postbacks", "/api/earn/postback"),
}

# The user agents of the software that sends each dialect.
POSTBACK_AGENTS = {
    "network": ("Keitaro/10.2", "node-fetch/1.0", "curl/8.5.0", "Stripe/1.0 (+https://stripe.com)"),
    "publisher": ("MoustacheLeads-Postback/2.2", "python-requests/2.31.0"),
    "peerclick": ("PeerClick-S2S/1.0",),
    "advertiser": ("AppsFlyer/1.0", "Adjust/4.38", "Voluum-Postback/3.1"),
    "earn": ("okhttp/4.12.0", "axios/1.6.8"),
}


@dataclass
class Post:
    """A postback before it is put in its dialect's words."""

    target: Target
    click: str | None = CLICK  # CLICK, a literal click id, or None to leave it out
    status: str | None = None
    amount: str = "0"
    currency: str | None = None
    txn: str | None = None
    key: str | None = None  # the key to send, if any
    path: str | None = None  # overrides the dialect's path (wrong path, key left out)
    campaign: str | None = None  # advertiser only
    variant: str = "get"  # get | form | json | header


def _click_param(post: Post, name: str) -> list[tuple[str, Any]]:
    return [] if post.click is None else [(name, post.click)]


def _given(*params: tuple[str, Any]) -> list[tuple[str, Any]]:
    """The parameters that have a value: a partner leaves out what it does not know."""
    return [(name, value) for name, value in params if value is not None and value != ""]


def _carry(post: Post, path: str, params: list[tuple[str, Any]], rng: random.Random,
           url_params: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Put a postback's parameters where its variant puts them: query, form or JSON body."""
    url_params = list(url_params or [])
    headers = [("User-Agent", rng.choice(POSTBACK_AGENTS[post.target.dialect]))]
    if post.variant == "header" and post.key:
        headers.append(("X-API-Key", post.key))
        return {"method": "POST", "path": path, "query": tuple(url_params + params),
                "headers": tuple(headers)}
    if post.key and post.target.dialect != "publisher":
        params = [("api_key", post.key), *params]
    if post.variant in ("form", "json"):
        if post.variant == "json":
            params = [(k, float(v) if k in ("amount", "payout", "commission") else v)
                      for k, v in params]
        return {"method": "POST", "path": path, "query": tuple(url_params), "body": tuple(params),
                "body_format": post.variant, "headers": tuple(headers)}
    return {"method": "GET", "path": path, "query": tuple(url_params + params),
            "headers": tuple(headers)}


def _network(post: Post, rng: random.Random) -> dict[str, Any]:
    """Seed 003: api_key, click_id or cid, status, amount, commission, currency, a txn alias."""
    params = _click_param(post, rng.choice(("click_id", "click_id", "cid")))
    if post.status is not None:
        params.append(("status", post.status))
    commission = f"{float(post.amount) * rng.uniform(0.1, 0.3):.2f}"
    params += [("amount", post.amount), ("commission", commission)]
    if post.currency:
        params.append(("currency", post.currency))
    if post.txn:
        params.append((rng.choice(("transaction_id", "txn", "order_id", "txid")), post.txn))
    return _carry(post, post.path or DIALECT_PATHS["network"], params, rng)


def _publisher(post: Post, rng: random.Random) -> dict[str, Any]:
    """Seed 001: the key in the path; payout, offer or survey id, and any custom data."""
    key = quote(post.key or "", safe="")
    path = (post.path or DIALECT_PATHS["publisher"]).replace("{key}", key)
    params = _click_param(post, "click_id")
    if post.status is not None:
        params.append(("status", post.status))
    params.append(("payout", post.amount))
    if post.currency:
        params.append(("currency", post.currency))
    params.append(rng.choice((("offer_id", post.target.offer),
                              ("survey_id", f"SRV-{rng.randrange(1000, 9999)}"))))
    if post.txn:
        params += [("transaction_id", post.txn), ("conversion_id", f"cv{rng.randrange(10**6)}")]
    params.append(("user_id", f"pub-user-{rng.randrange(1, 500)}"))
    if rng.random() < 0.5:  # survey answers, captured as custom data
        params += [("q1", rng.choice(("yes", "no"))), ("age_range", rng.choice(("18-24", "25-34"))),
                   ("country", rng.choice(("US", "DE", "BR", "IN")))]
    return _carry(post, path, params, rng)


def _peerclick(post: Post, rng: random.Random) -> dict[str, Any]:
    """Seed 002: cid, payout, status, txid, currency, conversion_id, paramN, eventN."""
    params = _click_param(post, "cid")
    params += [("payout", post.amount),
               *_given(("status", post.status), ("txid", post.txn), ("currency", post.currency)),
               ("conversion_id", f"pc-{rng.randrange(10**6)}"),
               ("param1", rng.choice(("android", "ios"))), ("param2", f"zone{rng.randrange(1, 30)}")]
    if rng.random() < 0.5:
        params.append(("event1", str(rng.randrange(1, 5))))
    return _carry(post, post.path or DIALECT_PATHS["peerclick"], params, rng)


def _advertiser(post: Post, rng: random.Random) -> dict[str, Any]:
    """Seed 004: campaign_id and click_id exactly as the URL gave them; extras by campaign type."""
    url_params = [] if post.campaign is None else [("campaign_id", post.campaign)]
    url_params += _click_param(post, "click_id")
    params = [("payout", post.amount), ("event", rng.choice(("install", "signup", "purchase"))),
              *_given(("status", post.status), ("currency", post.currency))]
    return _carry(post, post.path or DIALECT_PATHS["advertiser"], params, rng, url_params)


def _earn(post: Post, rng: random.Random) -> dict[str, Any]:
    """Seed 000: POST to the postback_url from the redirectUrl, JSON amount/status/transactionId."""
    if post.click == CLICK and post.path is None:
        path, query = EARN_POSTBACK, ()
    else:
        path, query = post.path or DIALECT_PATHS["earn"], tuple(_click_param(post, "click_id"))
    body = [("amount", float(post.amount)), *_given(("status", post.status), ("transactionId", post.txn),
                                                    ("currency", post.currency))]
    headers = [("User-Agent", rng.choice(POSTBACK_AGENTS["earn"]))]
    if post.key:
        headers.append(("X-API-Key", post.key))
    return {"method": "POST", "path": path, "query": query, "body": tuple(body),
            "body_format": "json", "headers": tuple(headers)}


BUILDERS = {"network": _network, "publisher": _publisher, "peerclick": _peerclick,
            "advertiser": _advertiser, "earn": _earn}


__all__ = ["BUILDERS", "POSTBACK_AGENTS", "WRONG_PATHS", "Post"]
