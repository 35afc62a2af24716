"""`clickledger simulate`: realistic clicks and postbacks against a running receiver.

The receiver earns its keep on messy traffic: typos of click ids, unfilled macros,
wrong keys, resent and late postbacks, postbacks sent to the wrong path. So the
simulator sends exactly that mix, in all five seed dialects, counts every answer and
flags each answer its scenario did not expect: a demo load and a smoke check at once.

The traffic is planned first, as a pure function of the config and the seed
(`plan_traffic`), then sent in phases: clicks, then their postbacks, then resent and
late postbacks, so a follow-up always finds its original already answered. Only the
standard library talks HTTP (keep-alive `http.client` connections, a few threads), and
redirects are never followed: the click id is read from the 302's Location.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import sys
import threading
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from receiver.config import Config, ConfigError, Link, Product, User, load_config

CLICK = "\x00click\x00"  # stands for the click id of a step's click_slot until it is sent
EARN_POSTBACK = "\x00earn-postback\x00"  # the postback_url that the earn click's redirectUrl carried

THREADS = 8
TIME_LIMIT = 120.0  # seconds: past it, the rest of the plan is not sent
REQUEST_TIMEOUT = 10.0
WAVES = 4  # clicks go out in waves; a wave's postbacks follow with the next one

DIALECTS = ("network", "publisher", "peerclick", "advertiser", "earn")
DIALECT_PATHS = {
    "network": "/api/postback",
    "publisher": "/postback/{key}",
    "peerclick": "/postback",
    "advertiser": "/postback/advertiser",
    "earn": "/api/v1/earn/postback",
}
# The demo partner written for each seed system; other configs get a fallback choice.
PREFERRED = {"network": "acme", "publisher": "moustache", "peerclick": "peerclick",
             "advertiser": "clickwall"}
KEYED_DIALECTS = ("network", "publisher")  # their seed documents put a key in every postback
MACROS = ("{click_id}", "%7Bclick_id%7D", "[click_id]", "${click_id}", "#click_id#")
CURRENCIES = ("USD", "EUR", "GBP")
NO_FX_CURRENCY = "BRL"  # the demo's fx_rates.csv has no rate for it
WRONG_PATHS = {
    "network": ("/postback-old", "/api/postbacks", "/api/v2/postback"),
    "publisher": ("/postbacks/{key}", "/postback-old/{key}"),
    "peerclick": ("/postback-old", "/pstb/postback"),
    "advertiser": ("/postback-old/advertiser", "/advertiser/postback"),
    "earn": ("/api/v1/earn/postbacks", "/api/earn/postback"),
}

KIND_ORDER = ("health", "click", "track", "postback")
COLUMN_ORDER = ("link", "earn", *DIALECTS[:-1])
SCENARIO_ORDER = (
    "healthz", "status_check",
    "link", "paused_offer", "unknown_slug", "earn", "no_token", "bad_token", "bad_task_url",
    "track", "conversion", "pending", "rejected", "no_fx_currency", "duplicate", "late", "reversal",
    "test", "wrong_key", "other_partner_key", "missing_key", "missing_click_id", "unknown_click", "macro",
    "wrong_campaign", "missing_campaign", "wrong_path",
)
RECORDED = frozenset({"recorded"})

USER_AGENTS = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
)
POSTBACK_AGENTS = {
    "network": ("Keitaro/10.2", "node-fetch/1.0", "curl/8.5.0", "Stripe/1.0 (+https://stripe.com)"),
    "publisher": ("MoustacheLeads-Postback/2.2", "python-requests/2.31.0"),
    "peerclick": ("PeerClick-S2S/1.0",),
    "advertiser": ("AppsFlyer/1.0", "Adjust/4.38", "Voluum-Postback/3.1"),
    "earn": ("okhttp/4.12.0", "axios/1.6.8"),
}
APP_AGENT = "Dart/3.4 (dart:io)"


class SimulationError(Exception):
    """The simulation cannot start: no usable config, or no healthy receiver at the URL."""


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Target:
    """Who answers for a click's postbacks and how: one partner, through one dialect."""

    dialect: str
    partner: str
    offer: str
    currency: str
    key: str | None  # the partner's plaintext key, when config.toml holds one
    key_required: bool
    status_updates: bool

    @property
    def sends_key(self) -> bool:
        return self.key is not None and (self.key_required or self.dialect in KEYED_DIALECTS)


@dataclass(frozen=True)
class Step:
    """One planned request. CLICK in its path, query or body stands for a click id not yet known."""

    id: int
    phase: int
    kind: str  # health | click | track | postback
    dialect: str  # link | earn for clicks; the postback dialect for postbacks
    scenario: str
    expected: frozenset[str]  # the result or error codes this scenario should get
    method: str = "GET"
    path: str = "/"
    query: tuple[tuple[str, str], ...] = ()
    body: tuple[tuple[str, Any], ...] = ()
    body_format: str = ""  # "" | "form" | "json"
    headers: tuple[tuple[str, str], ...] = ()
    click_slot: int | None = None  # the click step whose id fills CLICK
    mutation: tuple[Any, ...] | None = None  # how that id is garbled before it is sent
    after: int | None = None  # a step that must have been sent first (duplicate, late)
    creates_click: bool = False
    currency: str | None = None  # the currency parameter sent, for the summary

    @property
    def variant(self) -> str:
        return f"{self.method} {self.body_format}".strip()


@dataclass(frozen=True)
class _Slot:
    """A planned click whose postbacks are planned too."""

    step: int
    wave: int
    target: Target


@dataclass
class _Post:
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


def plain_keys(config_path: Path) -> dict[str, str]:
    """partner id -> plaintext api_key: Config keeps only digests, but a sender needs the key."""
    raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    return {p["id"]: p["api_key"] for p in raw.get("partners", [])
            if isinstance(p, dict) and isinstance(p.get("api_key"), str) and "id" in p}


def link_targets(config: Config, keys: Mapping[str, str]) -> dict[str, Target]:
    """offer id -> Target for offers with a tracking link; offers we cannot post for are left out.

    Each dialect goes to its demo partner when present, else to a partner that fits it
    (keyed dialects need a known key; public ones a partner that takes keyless postbacks).
    """
    partners = list(dict.fromkeys(config.offers[link.offer].partner
                                  for link in config.links.values()))
    keyed = [p for p in partners if p in keys]
    public = [p for p in partners if config.partners[p].postback_auth == "none"]
    pools = {"network": keyed, "publisher": keyed, "peerclick": public, "advertiser": public}
    chosen: dict[str, str] = {}
    for dialect, pool in pools.items():
        if PREFERRED[dialect] in pool:
            chosen[PREFERRED[dialect]] = dialect
    for dialect, pool in pools.items():
        if dialect not in chosen.values():
            spare = [p for p in pool if p not in chosen and p not in PREFERRED.values()]
            spare = spare or [p for p in pool if p not in chosen]
            if spare:
                chosen[spare[0]] = dialect
    for partner in partners:  # any other partner still gets postbacks, in a dialect that fits
        if partner not in chosen and (partner in keys or partner in public):
            chosen[partner] = "network" if partner in keys else "peerclick"
    return {offer.id: _target(config, keys, chosen[offer.partner], offer.id)
            for offer in config.offers.values() if offer.partner in chosen}


def earn_targets(config: Config, keys: Mapping[str, str]) -> dict[str, Target]:
    """offer id -> Target for the offers of earn products whose postbacks we can authenticate."""
    out: dict[str, Target] = {}
    for product in config.products.values():
        partner = config.partners[config.offers[product.offer].partner]
        if partner.postback_auth == "none" or partner.id in keys:
            out[product.offer] = _target(config, keys, "earn", product.offer)
    return out


def _target(config: Config, keys: Mapping[str, str], dialect: str, offer_id: str) -> Target:
    offer = config.offers[offer_id]
    partner = config.partners[offer.partner]
    return Target(dialect, partner.id, offer.id, offer.currency, keys.get(partner.id),
                  partner.postback_auth == "key", partner.status_updates)


def plan_traffic(config: Config, keys: Mapping[str, str], clicks: int, seed: int) -> list[Step]:
    """The whole run as a list of steps in sending order: a pure function of config, keys and seed.

    Ids the receiver generates are not known here; steps refer to the click step whose
    answer will carry them, so two plans of the same seed compare equal.
    """
    planner = _Planner(config, keys, seed)
    planner.add(0, "health", "", "status_check", frozenset({"ok"}),
                path="/api/analytics/postback/test")
    slots = planner.plan_clicks(max(clicks, 0))
    planner.plan_tracks([s for s in slots if s.target.dialect == "earn"])
    by_dialect: dict[str, list[_Slot]] = {}
    for slot in slots:
        by_dialect.setdefault(slot.target.dialect, []).append(slot)
    for dialect in DIALECTS:
        if by_dialect.get(dialect):
            planner.plan_postbacks(by_dialect[dialect], len(by_dialect))
    return planner.ordered()


class _Planner:
    """Builds the steps; one seeded Random drawn in a fixed order keeps the plan reproducible."""

    def __init__(self, config: Config, keys: Mapping[str, str], seed: int):
        self.config = config
        self.keys = dict(keys)
        self.rng = random.Random(seed)
        self.steps: list[Step] = []
        self.link_targets = link_targets(config, keys)
        self.earn_targets = earn_targets(config, keys)
        self.macro_turn = self.rng.randrange(len(MACROS))
        self._reversal_planned = False

    def add(self, phase: int, kind: str, dialect: str, scenario: str, expected: frozenset[str],
            **request: Any) -> Step:
        step = Step(len(self.steps), phase, kind, dialect, scenario, expected, **request)
        self.steps.append(step)
        return step

    def ordered(self) -> list[Step]:
        """Phase by phase, shuffled within a phase so the dialects interleave as they would live."""
        out: list[Step] = []
        for _, group in groupby(sorted(self.steps, key=lambda s: s.phase), key=lambda s: s.phase):
            steps = list(group)
            self.rng.shuffle(steps)
            out += steps
        return out

    # -- clicks

    def plan_clicks(self, clicks: int) -> list[_Slot]:
        config, rng = self.config, self.rng
        active = [k for k in config.links.values() if config.offers[k.offer].status == "active"]
        paused = [k for k in config.links.values() if config.offers[k.offer].status != "active"]
        pairs = [(p, u) for p in config.products.values() for u in config.users.values()]
        kinds = self._click_kinds(clicks, bool(active), bool(paused), bool(pairs))
        rng.shuffle(active)
        rng.shuffle(pairs)
        slots: list[_Slot] = []
        counts = Counter[str]()
        for position, kind in enumerate(kinds):
            wave = position * WAVES // len(kinds)
            turn = counts[kind]
            counts[kind] += 1
            if kind == "link":
                step = self._link_click(wave, active[turn % len(active)])
                target = self.link_targets.get(active[turn % len(active)].offer)
            elif kind == "earn":
                product, user = pairs[turn % len(pairs)]
                step = self._earn_click(wave, product, user, "earn")
                target = self.earn_targets.get(product.offer)
            else:
                self._odd_click(wave, kind, paused, pairs)
                continue
            if target is not None:
                slots.append(_Slot(step.id, wave, target))
        return slots

    def _click_kinds(self, clicks: int, links: bool, paused: bool, earn: bool) -> list[str]:
        """The kind of each click: mostly good ones, a few the receiver must turn away."""
        extras: list[str] = []
        if paused:
            extras += ["paused_offer"] * max(1, clicks // 40)
        if links:
            extras += ["unknown_slug"] * max(1, clicks // 100)
        if earn:
            for kind in ("no_token", "bad_token", "bad_task_url"):
                extras += [kind] * max(1, clicks // 150)
        extras = extras[: clicks // 4]
        regular = clicks - len(extras)
        n_earn = (round(regular * 0.3) if links else regular) if earn else 0
        n_link = regular - n_earn if links else 0
        kinds = ["link"] * n_link + ["earn"] * n_earn + extras
        self.rng.shuffle(kinds)
        return kinds

    def _browser_headers(self) -> tuple[tuple[str, str], ...]:
        rng = self.rng
        headers = [("User-Agent", rng.choice(USER_AGENTS)),
                   ("Accept-Language", rng.choice(("en-US,en;q=0.9", "de-DE,de;q=0.8", "pt-BR")))]
        if rng.random() < 0.5:
            headers.append(("Referer", rng.choice(("https://blog.example/best-apps-2024",
                                                   "https://coupons.example/deals",
                                                   "https://t.co/x7Qa9"))))
        return tuple(headers)

    def _link_click(self, wave: int, link: Link, scenario: str = "link",
                    expected: str = "click") -> Step:
        rng = self.rng
        query: list[tuple[str, str]] = []
        if rng.random() < 0.6:
            query += [("sub1", rng.choice(("fb", "tiktok", "native", "email"))),
                      ("sub2", f"cr{rng.randrange(1, 40)}")]
        return self.add(wave, "click", "link", scenario, frozenset({expected}),
                        path=f"/t/{quote(link.slug, safe='')}", query=tuple(query),
                        headers=self._browser_headers(), creates_click=(scenario == "link"))

    def _earn_click(self, wave: int, product: Product, user: User | None, scenario: str) -> Step:
        rng = self.rng
        headers = [("User-Agent", APP_AGENT)]
        token = user.token if user else ""
        if scenario == "bad_token":
            token = f"expired-{rng.getrandbits(48):012x}"
        if scenario != "no_token":
            headers.append(("Authorization", f"Bearer {token}"))
        task_url = product.task_url
        if scenario == "bad_task_url":
            task_url = rng.choice(("https://phish.example/offer", "javascript:alert(1)"))
        body: list[tuple[str, Any]] = [("taskUrl", task_url)]
        if rng.random() < 0.3:
            body.append(("appVersion", rng.choice(("2.4.1", "2.5.0"))))
        expected = {"earn": "click", "no_token": "token_required", "bad_token": "invalid_token",
                    "bad_task_url": "invalid_task_url"}[scenario]
        return self.add(wave, "click", "earn", scenario, frozenset({expected}), method="POST",
                        path=f"/api/v1/earn/products/{quote(product.id, safe='')}/click",
                        body=tuple(body), body_format="json", headers=tuple(headers),
                        creates_click=(scenario == "earn"))

    def _odd_click(self, wave: int, kind: str, paused: list[Link],
                   pairs: list[tuple[Product, User]]) -> None:
        rng = self.rng
        if kind == "paused_offer":
            self._link_click(wave, rng.choice(paused), "paused_offer", "offer_inactive")
        elif kind == "unknown_slug":
            slug = rng.choice(list(self.config.links))
            typo = slug[:-1] if len(slug) > 1 and rng.random() < 0.5 else slug + "x"
            while typo in self.config.links:
                typo += "x"
            self._link_click(wave, Link(typo, "", ""), "unknown_slug", "link_not_found")
        else:
            product, user = rng.choice(pairs)
            self._earn_click(wave, product, user, kind)

    def plan_tracks(self, slots: list[_Slot]) -> None:
        """The earn app's optional analytics events, and one for a click id it got wrong."""
        for slot in slots:
            if self.rng.random() < 0.5:
                self._track(slot, "track", None)
        if slots:
            self._track(self.rng.choice(slots), "unknown_click", self._typo())

    def _track(self, slot: _Slot, scenario: str, mutation: tuple[Any, ...] | None) -> None:
        event = self.rng.choice(("webview_open", "webview_close", "task_started"))
        expected = "tracked" if mutation is None else "click_not_found"
        self.add(slot.wave + 1, "track", "earn", scenario, frozenset({expected}),
                 path=f"/api/v1/earn/track/{CLICK}", query=(("event", event),),
                 headers=(("User-Agent", APP_AGENT),), click_slot=slot.step, mutation=mutation)

    # -- postbacks

    def plan_postbacks(self, slots: list[_Slot], dialects: int) -> None:
        """Conversions for most clicks, follow-ups for some, then every mistake a partner makes."""
        rng = self.rng
        forced = ("conversion", "pending", "rejected", "no_fx_currency")
        for i, slot in enumerate(slots):
            fate = forced[i] if i < len(forced) else rng.choices(
                ("none", "conversion", "pending", "rejected", "no_fx_currency"),
                (15, 58, 15, 8, 4))[0]
            if fate == "none":
                continue
            step = self._primary(slot, fate)
            if fate == "conversion" and (i == 0 or rng.random() < 0.12):
                self.add_follow_up(step, "duplicate")
            if fate == "pending" and slot.target.status_updates and (i == 1 or rng.random() < 0.7):
                self.add_follow_up(step, "late")
            if fate == "conversion" and slot.target.status_updates and (
                    not self._reversal_planned or rng.random() < 0.06):
                self.add_follow_up(step, "reversal")  # a chargeback after approval
                self._reversal_planned = True
        for scenario in ("test", "wrong_key", "other_partner_key", "missing_key", "missing_click_id",
                         "unknown_click", "macro", "wrong_campaign", "missing_campaign", "wrong_path"):
            fitting = [s for s in slots if self._fits(scenario, s.target)]
            count = max(1, round(len(slots) * 0.04)) if fitting else 0
            if scenario == "macro" and fitting:
                count = max(count, -(-len(MACROS) // dialects), 2)
            for _ in range(count):
                self._mistake(scenario, rng.choice(fitting))

    def _fits(self, scenario: str, target: Target) -> bool:
        if scenario == "other_partner_key":
            return any(p != target.partner for p in self.keys)
        if scenario == "missing_key":
            return target.key_required
        if scenario in ("wrong_campaign", "missing_campaign"):
            return target.dialect == "advertiser"
        return True

    def _base(self, target: Target) -> _Post:
        """An ordinary approved conversion in this dialect's habits."""
        rng = self.rng
        low, high = {"network": (15, 240), "publisher": (0.4, 4.5), "peerclick": (1, 12),
                     "advertiser": (0.8, 6), "earn": (10, 100)}[target.dialect]
        roll = rng.random()
        currency = (target.currency if roll < 0.6 else None if roll < 0.85
                    else rng.choice([c for c in CURRENCIES if c != target.currency]))
        txn = {"network": f"ord_{rng.randrange(10**6, 10**7)}",
               "publisher": f"ML-{rng.randrange(10**5, 10**6)}",
               "peerclick": f"{rng.getrandbits(40):010x}",
               "advertiser": None,  # seed 004 has no transaction id: one postback per click
               "earn": f"txn_{rng.getrandbits(32):08x}"}[target.dialect]
        if target.dialect == "network" and rng.random() < 0.1:
            txn = None  # seed 003: the transaction id defaults to the click id
        variant = rng.choices(("get", "form", "json", "header"), {
            "network": (55, 20, 10, 15), "publisher": (80, 20, 0, 0), "peerclick": (90, 10, 0, 0),
            "advertiser": (75, 0, 25, 0), "earn": (0, 0, 100, 0)}[target.dialect])[0]
        return _Post(target, status=self._status(target.dialect, "approved"),
                     amount=f"{rng.uniform(low, high):.2f}", currency=currency, txn=txn,
                     key=target.key if target.sends_key else None, campaign=target.offer,
                     variant=variant)

    def _status(self, dialect: str, status: str) -> str | None:
        choices = {
            "approved": {"network": ("confirmed", "approved", "paid", None), "publisher": ("approved",),
                         "peerclick": ("approved",), "advertiser": (None, "approved"),
                         "earn": ("completed",)}[dialect],
            "pending": ("pending", "pending", "hold"),
            "rejected": ("rejected", "declined", "chargeback"),
        }[status]
        return self.rng.choice(choices)

    def _primary(self, slot: _Slot, fate: str) -> Step:
        post = self._base(slot.target)
        if fate in ("pending", "rejected"):
            post.status = self._status(slot.target.dialect, fate)
        if fate == "no_fx_currency":
            post.currency = NO_FX_CURRENCY
        return self._postback(slot.wave + 1, slot, fate, RECORDED, post)

    def add_follow_up(self, original: Step, scenario: str) -> Step:
        """The same postback again later: resent as is, or (late) with its final status."""
        step = replace(original, id=len(self.steps), phase=original.phase + 1, scenario=scenario,
                       expected=frozenset({"duplicate"}), after=original.id)
        if scenario in ("late", "reversal"):
            final = (self._status(original.dialect, "approved") or "approved" if scenario == "late"
                     else self.rng.choice(("reversed", "chargeback")))
            if any(k == "status" for k, _ in (*step.query, *step.body)):
                step = replace(step, query=_set_param(step.query, "status", final),
                               body=_set_param(step.body, "status", final))
            elif step.body:  # the original sent no status (approved by default): add it
                step = replace(step, body=(*step.body, ("status", final)))
            else:
                step = replace(step, query=(*step.query, ("status", final)))
        self.steps.append(step)
        return step

    def _mistake(self, scenario: str, slot: _Slot) -> None:
        post, target, rng = self._base(slot.target), slot.target, self.rng
        phase, uses_click = slot.wave + 1, True
        expected = scenario
        if scenario == "test":
            post.status, post.amount = "test", "1.00"
            if target.sends_key:  # seed 001: "click_id=TEST-123&status=test" with a valid key
                post.click, uses_click = "TEST-123", False
        elif scenario == "wrong_key":
            post.key = self._wrong_key(target)
            expected = "invalid_api_key"
        elif scenario == "other_partner_key":
            post.key = self.keys[rng.choice(sorted(p for p in self.keys if p != target.partner))]
            expected = "invalid_api_key"
        elif scenario == "missing_key":
            post.key = None
            if target.dialect == "publisher":  # the key left out of the path
                post.path = "/postback"
            expected = "api_key_required"
        elif scenario == "missing_click_id":
            post.click, uses_click = rng.choice((None, "")), False
            expected = "click_id_required"
        elif scenario in ("unknown_click", "macro"):
            expected = self._unknown_click_answer(post)
            if scenario == "macro":
                post.click, uses_click = MACROS[self.macro_turn % len(MACROS)], False
                self.macro_turn += 1
        elif scenario == "wrong_campaign":
            others = sorted(o for o in self.config.offers if o != target.offer)
            post.campaign = rng.choice([*others[:2], "XXXX", target.offer + "0"])
            expected = "campaign_mismatch"
        elif scenario == "missing_campaign":
            post.campaign = None
            expected = "campaign_id_required"
        elif scenario == "wrong_path":
            post.path = rng.choice(WRONG_PATHS[target.dialect])
            expected = "not_found"
        if not uses_click:
            phase = rng.randint(1, WAVES)
        mutation = self._typo() if scenario == "unknown_click" else None
        self._postback(phase, slot if uses_click else None, scenario, frozenset({expected}), post,
                       mutation)

    def _unknown_click_answer(self, post: _Post) -> str:
        """A click id we never issued: click_not_found, unless the receiver cannot tell who asks."""
        if post.key or self.config.any_public_partner:
            return "click_not_found"
        return "api_key_required"

    def _wrong_key(self, target: Target) -> str:
        rng = self.rng
        own = target.key or "sp_live_key"
        candidates = ("YOUR_KEY", "sp_live_xxx", own[:-1] + ("0" if own[-1] != "0" else "1"),
                      own + "_old", "{api_key}")
        key = rng.choice(candidates)
        while key in self.keys.values():
            key += "x"
        return key

    def _typo(self) -> tuple[Any, ...]:
        """How to garble a real click id: one character changed, truncated, or a stale id."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return ("change", rng.randrange(36), rng.choice("0123456789abcdef"))
        if roll < 0.8:
            return ("truncate", rng.randrange(8, 35))
        return ("literal", str(uuid.UUID(int=rng.getrandbits(128), version=4)))

    def _postback(self, phase: int, slot: _Slot | None, scenario: str, expected: frozenset[str],
                  post: _Post, mutation: tuple[Any, ...] | None = None) -> Step:
        request = BUILDERS[post.target.dialect](post, self.rng)
        if mutation is not None and request["path"] == EARN_POSTBACK:
            request["path"], request["query"] = DIALECT_PATHS["earn"], (("click_id", CLICK),)
        return self.add(phase, "postback", post.target.dialect, scenario, expected,
                        click_slot=slot.step if slot else None, mutation=mutation,
                        currency=post.currency, **request)


def _set_param(pairs: tuple[tuple[str, Any], ...], name: str, value: str
               ) -> tuple[tuple[str, Any], ...]:
    if any(k == name for k, _ in pairs):
        return tuple((k, value if k == name else v) for k, v in pairs)
    return pairs


def _click_param(post: _Post, name: str) -> list[tuple[str, Any]]:
    return [] if post.click is None else [(name, post.click)]


def _carry(post: _Post, path: str, params: list[tuple[str, Any]], rng: random.Random,
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


def _network(post: _Post, rng: random.Random) -> dict[str, Any]:
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


def _publisher(post: _Post, rng: random.Random) -> dict[str, Any]:
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


def _peerclick(post: _Post, rng: random.Random) -> dict[str, Any]:
    """Seed 002: cid, payout, status, txid, currency, conversion_id, paramN, eventN."""
    params = _click_param(post, "cid")
    params.append(("payout", post.amount))
    if post.status is not None:
        params.append(("status", post.status))
    if post.txn:
        params.append(("txid", post.txn))
    if post.currency:
        params.append(("currency", post.currency))
    params += [("conversion_id", f"pc-{rng.randrange(10**6)}"),
               ("param1", rng.choice(("android", "ios"))), ("param2", f"zone{rng.randrange(1, 30)}")]
    if rng.random() < 0.5:
        params.append(("event1", str(rng.randrange(1, 5))))
    return _carry(post, post.path or DIALECT_PATHS["peerclick"], params, rng)


def _advertiser(post: _Post, rng: random.Random) -> dict[str, Any]:
    """Seed 004: campaign_id and click_id exactly as the URL gave them; extras by campaign type."""
    url_params = [] if post.campaign is None else [("campaign_id", post.campaign)]
    url_params += _click_param(post, "click_id")
    params = [("payout", post.amount), ("event", rng.choice(("install", "signup", "purchase")))]
    if post.status is not None:
        params.append(("status", post.status))
    if post.currency:
        params.append(("currency", post.currency))
    return _carry(post, post.path or DIALECT_PATHS["advertiser"], params, rng, url_params)


def _earn(post: _Post, rng: random.Random) -> dict[str, Any]:
    """Seed 000: POST to the postback_url from the redirectUrl, JSON amount/status/transactionId."""
    if post.click == CLICK and post.path is None:
        path, query = EARN_POSTBACK, ()
    else:
        path, query = post.path or DIALECT_PATHS["earn"], tuple(_click_param(post, "click_id"))
    body: list[tuple[str, Any]] = [("amount", float(post.amount))]
    if post.status is not None:
        body.append(("status", post.status))
    if post.txn:
        body.append(("transactionId", post.txn))
    if post.currency:
        body.append(("currency", post.currency))
    headers = [("User-Agent", rng.choice(POSTBACK_AGENTS["earn"]))]
    if post.key:
        headers.append(("X-API-Key", post.key))
    return {"method": "POST", "path": path, "query": query, "body": tuple(body),
            "body_format": "json", "headers": tuple(headers)}


BUILDERS = {"network": _network, "publisher": _publisher, "peerclick": _peerclick,
            "advertiser": _advertiser, "earn": _earn}


# ---------------------------------------------------------------- the summary


@dataclass
class SimulationSummary:
    """What was sent and what came back, counted, so a person sees the run at a glance."""

    url: str
    seed: int
    clicks: int
    planned: int = 0
    sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # kind, dialect, scenario
    answers: Counter[tuple[int, str]] = field(default_factory=Counter)  # status, result or error
    unexpected: Counter[tuple[str, str, str, str, int, str]] = field(default_factory=Counter)
    unexpected_examples: dict[tuple[str, str, str, str, int, str], str] = field(default_factory=dict)
    variants: Counter[str] = field(default_factory=Counter)  # GET, POST form, POST json, POST
    currencies: Counter[str] = field(default_factory=Counter)  # currency parameter of postbacks
    skipped: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # their click failed
    not_sent: int = 0  # left when the time limit struck
    retried: int = 0  # requests resent once on a keep-alive connection the server had closed
    postback_url_elsewhere: int = 0  # earn clicks whose postback_url named another host
    public_url: str = ""  # the config's: the host earn clicks name in their postback_url
    # True when this receiver stands in for public_url on purpose (`clickledger demo` serves on a
    # temporary port while its config names the address `make serve` serves).
    stand_in_for_public_url: bool = False
    elapsed: float = 0.0
    time_limit: float = TIME_LIMIT

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def stopped_early(self) -> bool:
        return self.not_sent > 0

    def count(self, code: str) -> int:
        """Answers with this result or error code, whatever their HTTP status."""
        return sum(n for (_, c), n in self.answers.items() if c == code)

    @property
    def recorded(self) -> int:
        return self.count("recorded")

    def by(self, part: int) -> Counter[str]:
        """Requests sent by kind (0), dialect (1) or scenario (2)."""
        out = Counter[str]()
        for key, n in self.sent.items():
            out[key[part]] += n
        return out

    def add(self, outcome: _Outcome) -> None:
        step = outcome.step
        if outcome.status is None:
            self.not_sent += 1
            return
        key = (step.kind, step.dialect, step.scenario)
        self.sent[key] += 1
        self.answers[(outcome.status, outcome.code)] += 1
        self.variants[step.variant] += 1
        self.retried += outcome.retried
        if step.kind == "postback" and step.expected == RECORDED:
            self.currencies[step.currency or "(offer's)"] += 1
        if outcome.click is not None and outcome.click.elsewhere:
            self.postback_url_elsewhere += 1
        if outcome.code not in step.expected:
            bad = (*key, "|".join(sorted(step.expected)), outcome.status, outcome.code)
            self.unexpected[bad] += 1
            self.unexpected_examples.setdefault(bad, outcome.request_line)

    def describe(self) -> str:
        lines = [
            f"simulated {self.total_sent} requests against {self.url} in {self.elapsed:.1f} s "
            f"(seed {self.seed}, {self.clicks} clicks planned, {self.planned} requests planned)",
            "", *self._scenario_table(), "", "answers (HTTP status, result or error):",
        ]
        width = max((len(c) for _, c in self.answers), default=0)
        for (status, code), n in sorted(self.answers.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {status:>3} {code:<{width}} {n:>6}")
        lines += ["", "methods:    " + _inline(self.variants),
                  "currencies: " + _inline(self.currencies) + "  (postbacks meant to be recorded)"]
        lines += self._notes()
        lines += ["", *self._unexpected_lines()]
        return "\n".join(lines)

    def _scenario_table(self) -> list[str]:
        columns = [c for c in COLUMN_ORDER if self.by(1)[c]]
        rows = sorted({(k, s) for k, _, s in self.sent},
                      key=lambda r: (KIND_ORDER.index(r[0]) if r[0] in KIND_ORDER else 9,
                                     _rank(SCENARIO_ORDER, r[1]), r[1]))
        widths = {c: max(len(c), 5) + 1 for c in columns}
        out = [f"{'requests sent':<28}" + "".join(f"{c:>{widths[c]}}" for c in columns)
               + f"{'total':>7}"]
        for kind, scenario in rows:
            cells = "".join(f"{self.sent[(kind, c, scenario)] or '.':>{widths[c]}}" for c in columns)
            total = sum(n for (k, _, s), n in self.sent.items() if (k, s) == (kind, scenario))
            out.append(f"{kind + ' ' + scenario:<28}{cells}{total:>7}")
        return out

    def _notes(self) -> list[str]:
        notes = []
        if self.skipped:
            notes.append(f"skipped {sum(self.skipped.values())} requests whose click was not made: "
                         + _inline(Counter({"/".join(k[1:]): n for k, n in self.skipped.items()})))
        if self.not_sent:
            notes.append(f"stopped at the {self.time_limit:.0f} s time limit: "
                         f"{self.not_sent} planned requests not sent")
        if self.retried:
            notes.append(f"{self.retried} requests resent once on a connection the server had closed")
        if self.postback_url_elsewhere:
            where = self.public_url or "another host"
            if self.stand_in_for_public_url:
                notes.append(f"{self.postback_url_elsewhere} earn clicks carried a postback_url on "
                             f"{where} (public_url, what `make serve` serves), as expected: this "
                             f"temporary receiver took their postbacks")
            else:
                notes.append(f"{self.postback_url_elsewhere} earn clicks carried a postback_url on "
                             f"{where} (the config's public_url), not on {self.url}: their postbacks "
                             f"were sent to {self.url}. Earn apps post to public_url: set it to the "
                             f"address they reach")
        return ["", *notes] if notes else []

    def _unexpected_lines(self) -> list[str]:
        if not self.unexpected:
            return ["unexpected answers: none"]
        out = [f"unexpected answers: {sum(self.unexpected.values())}"]
        for key, n in sorted(self.unexpected.items(), key=lambda kv: -kv[1]):
            kind, dialect, scenario, expected, status, code = key
            out.append(f"  {n:>4} x {kind} {dialect}/{scenario}: expected {expected}, "
                       f"got {status} {code}   e.g. {self.unexpected_examples[key]}")
        return out


def _rank(order: tuple[str, ...], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _inline(counts: Counter[str]) -> str:
    return " · ".join(f"{name} {n}" for name, n in counts.most_common()) or "-"


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class _Clicked:
    """What a click's answer told us: its id, and (earn) the postback URL to call later."""

    click_id: str
    postback_target: str | None = None
    elsewhere: bool = False


@dataclass(frozen=True)
class _Outcome:
    step: Step
    request_line: str
    status: int | None  # None: not sent (time limit); 0: no HTTP answer
    code: str
    click: _Clicked | None = None
    retried: bool = False


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    body: bytes | None
    headers: dict[str, str]

    @property
    def line(self) -> str:
        text = f"{self.method} {self.target}"
        return text if len(text) <= 140 else text[:137] + "..."


class _Client:
    """Keep-alive connections to the receiver, one per sending thread."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SimulationError(f"--url must be an http(s) URL like http://127.0.0.1:8080, got {url!r}")
        self.url = url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.netloc = parts.netloc.lower()
        self.prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=REQUEST_TIMEOUT)
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def send(self, request: _Request, timeout: float) -> tuple[int, str | None, bytes, bool]:
        """(status, Location, body, retried). A request that met a keep-alive connection the
        server had already closed is resent once on a fresh one; anything else raises OSError."""
        for attempt in (0, 1):
            conn, reused = self._connection()
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(request.method, self.prefix + request.target, body=request.body,
                             headers=request.headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if reused and attempt == 0:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self._drop()
                raise
            if resp.will_close:
                self._drop()
            return resp.status, resp.getheader("Location"), data, attempt == 1
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def _garble(click_id: str, mutation: tuple[Any, ...] | None) -> str:
    """Apply a planned typo to a real click id (the plan could not know the id)."""
    if mutation is None:
        return click_id
    if mutation[0] == "change" and click_id:
        pos = mutation[1] % len(click_id)
        char = mutation[2] if mutation[2] != click_id[pos] else ("1" if click_id[pos] == "0" else "0")
        return click_id[:pos] + char + click_id[pos + 1:]
    if mutation[0] == "truncate":
        return click_id[: min(mutation[1], max(len(click_id) - 1, 0))]
    return str(mutation[1])


def _fill(value: Any, click_id: str | None) -> Any:
    return click_id if value == CLICK else value


def resolve(step: Step, clicks: Mapping[int, _Clicked]) -> _Request | None:
    """The HTTP request of a step, with click ids filled in; None when its click was not made."""
    clicked = clicks.get(step.click_slot) if step.click_slot is not None else None
    if step.click_slot is not None and clicked is None:
        return None
    click_id = _garble(clicked.click_id, step.mutation) if clicked else None
    path = step.path
    if path == EARN_POSTBACK:
        path = clicked.postback_target if clicked and clicked.postback_target else (
            f"{DIALECT_PATHS['earn']}?click_id={quote(click_id or '', safe='')}")
    path = path.replace(CLICK, quote(click_id or "", safe=""))
    query = urlencode([(k, _fill(v, click_id)) for k, v in step.query], quote_via=quote)
    target = path + (("&" if "?" in path else "?") + query if query else "")
    headers = dict(step.headers)
    body = None
    if step.body_format == "json":
        body = json.dumps({k: _fill(v, click_id) for k, v in step.body}).encode()
        headers["Content-Type"] = "application/json"
    elif step.body_format == "form":
        body = urlencode([(k, _fill(v, click_id)) for k, v in step.body]).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return _Request(step.method, target, body, headers)


def classify(status: int, location: str | None, body: bytes) -> str:
    """An answer's result or error code, named as the log names it."""
    if 300 <= status < 400:
        query = parse_qs(urlsplit(location or "").query)
        return "click" if query.get("click_id") else "offer_inactive"
    if status == 204:
        return "tracked"
    try:
        data = json.loads(body)
    except ValueError:
        return f"http_{status}"
    if isinstance(data, dict):
        for name in ("result", "error"):
            if isinstance(data.get(name), str):
                return data[name]
        if "clickId" in data:
            return "click"
        if data.get("ok") is True:
            return "ok"
    return f"http_{status}"


class _Sender:
    """Sends resolved steps until the deadline; turns each answer into an _Outcome."""

    def __init__(self, client: _Client, deadline: float):
        self.client = client
        self.deadline = deadline

    def send(self, step: Step, request: _Request) -> _Outcome:
        left = self.deadline - time.monotonic()
        if left <= 0:
            return _Outcome(step, request.line, None, "not_sent")
        try:
            status, location, body, retried = self.client.send(request, min(REQUEST_TIMEOUT, left))
        except (OSError, http.client.HTTPException) as exc:
            return _Outcome(step, request.line, 0, f"transport_{type(exc).__name__}")
        code = classify(status, location, body)
        click = self._clicked(step, location, body) if step.creates_click else None
        return _Outcome(step, request.line, status, code, click, retried)

    def _clicked(self, step: Step, location: str | None, body: bytes) -> _Clicked | None:
        if step.dialect == "link":
            ids = parse_qs(urlsplit(location or "").query).get("click_id")
            return _Clicked(ids[0]) if ids else None
        try:
            data = json.loads(body)
            click_id, redirect = str(data["clickId"]), str(data.get("redirectUrl") or "")
        except (ValueError, KeyError, TypeError):
            return None
        postback = parse_qs(urlsplit(redirect).query).get("postback_url")
        if not postback:
            return _Clicked(click_id)
        parts = urlsplit(postback[0])
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return _Clicked(click_id, target, parts.netloc.lower() != self.client.netloc)


def _run_plan(plan: list[Step], sender: _Sender, summary: SimulationSummary) -> None:
    """Phase by phase through a small pool: a phase starts once the one before is answered."""
    clicks: dict[int, _Clicked] = {}
    sent: set[int] = set()
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="simulate") as pool:
        for _, group in groupby(plan, key=lambda s: s.phase):
            steps = list(group)
            if time.monotonic() >= sender.deadline:
                summary.not_sent += len(steps)
                continue
            jobs: list[tuple[Step, _Request]] = []
            for step in steps:
                request = None if step.after is not None and step.after not in sent else (
                    resolve(step, clicks))
                if request is None:
                    summary.skipped[(step.kind, step.dialect, step.scenario)] += 1
                else:
                    jobs.append((step, request))
            for outcome in pool.map(lambda job: sender.send(*job), jobs):
                summary.add(outcome)
                if outcome.status is not None:
                    sent.add(outcome.step.id)
                if outcome.click is not None:
                    clicks[outcome.step.id] = outcome.click


def _check_health(sender: _Sender, summary: SimulationSummary) -> None:
    step = Step(-1, 0, "health", "", "healthz", frozenset({"ok"}), path="/healthz")
    request = resolve(step, {})
    assert request is not None
    outcome = sender.send(step, request)
    if outcome.status == 0:
        raise SimulationError(f"the receiver at {summary.url} is unreachable "
                              f"(GET /healthz: {outcome.code.removeprefix('transport_')}); "
                              "start it with `clickledger serve`")
    summary.add(outcome)
    if outcome.status != 200:
        raise SimulationError(f"the receiver at {summary.url} is not healthy: GET /healthz "
                              f"answered {outcome.status} {outcome.code}")


class _AppClient:
    """The `_Client` interface over an in-process receiver: same app, same log, no sockets.

    Used for history, where the receiver's clock is simulated; every request still goes
    through the receiver's own code and becomes one durable log record.
    """

    def __init__(self, app: Any, remote_addrs: tuple[str, ...]):
        from falcon.testing import TestClient

        self._client = TestClient(app)
        self._addrs = remote_addrs
        self._turn = itertools.count()
        self.url = "in-process receiver"
        self.netloc = urlsplit(app.receiver.config.public_url).netloc.lower()

    def send(self, request: _Request, timeout: float) -> tuple[int, str | None, bytes, bool]:
        path, _, query = request.target.partition("?")
        result = self._client.simulate_request(
            request.method, path, query_string=query or None, body=request.body,
            headers=request.headers, remote_addr=self._addrs[next(self._turn) % len(self._addrs)])
        return result.status_code, result.headers.get("location"), result.content, False

    def close(self) -> None:
        pass


def simulate_history(data_dir: Path, *, days: int, clicks_per_day: int = 200, seed: int = 1,
                     end: datetime | None = None) -> list[SimulationSummary]:
    """Past days of traffic, each day's plan sent through an in-process receiver whose clock
    walks through that day, so the log holds a realistic history (for demos and notebooks).

    Days are the `days` UTC days before `end`'s day (default: today), oldest first; volume
    varies by weekday. Must run before any receiver serves `data_dir` (one writer per log).
    """
    from receiver.app import create_app

    config, keys = load(data_dir)
    today = (end or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(seed)
    summaries = []
    for back in range(days, 0, -1):
        day_start = today - timedelta(days=back)
        volume = max(10, int(clicks_per_day * (0.75 if day_start.weekday() >= 5 else 1.0)
                             * rng.uniform(0.8, 1.2)))
        plan = plan_traffic(config, keys, volume, seed * 1000 + back)
        spacing = timedelta(seconds=(20 * 3600) / max(1, len(plan)))
        ticks = itertools.count()
        opening = day_start + timedelta(hours=2)

        def clock(opening: datetime = opening, spacing: timedelta = spacing,
                  ticks: Any = ticks) -> datetime:
            return opening + spacing * next(ticks)

        app = create_app(Path(data_dir), clock=clock)
        try:
            client = _AppClient(app, _HISTORY_ADDRS)
            summary = SimulationSummary(f"history {day_start.date().isoformat()}", seed, volume,
                                        planned=len(plan))
            started = time.monotonic()
            _run_plan(plan, _Sender(client, started + TIME_LIMIT), summary)  # type: ignore[arg-type]
            summary.elapsed = time.monotonic() - started
        finally:
            app.receiver.close()
        summaries.append(summary)
    return summaries


_HISTORY_ADDRS = ("203.0.113.7", "198.51.100.23", "192.0.2.44", "203.0.113.81", "198.51.100.9")


def load(data_dir: Path) -> tuple[Config, dict[str, str]]:
    """The config and the partners' plaintext keys, or a SimulationError saying what is missing."""
    path = Path(data_dir) / "config.toml"
    try:
        return load_config(path), plain_keys(path)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as exc:
        raise SimulationError(f"cannot use the config: {exc}") from None


def simulate(url: str, data_dir: Path, *, clicks: int = 500, seed: int = 1,
             time_limit: float = TIME_LIMIT) -> SimulationSummary:
    """Send the planned traffic to the receiver at `url`; raises SimulationError before sending
    anything when the config is unusable or the receiver is not healthy."""
    config, keys = load(data_dir)
    plan = plan_traffic(config, keys, clicks, seed)
    client = _Client(url)
    summary = SimulationSummary(client.url, seed, clicks, planned=len(plan) + 1, time_limit=time_limit,
                                public_url=config.public_url)
    started = time.monotonic()
    try:
        _check_health(_Sender(client, started + REQUEST_TIMEOUT), summary)
        _run_plan(plan, _Sender(client, started + time_limit), summary)
    finally:
        client.close()
        summary.elapsed = time.monotonic() - started
    return summary


def main(args: argparse.Namespace) -> int:
    """`clickledger simulate`: 0 after printing the summary, 2 when it could not start."""
    try:
        summary = simulate(args.url, Path(args.data), clicks=args.clicks, seed=args.seed)
    except SimulationError as exc:
        print(f"clickledger simulate: {exc}", file=sys.stderr)
        return 2
    print(summary.describe())
    return 0


__all__ = ["SimulationError", "SimulationSummary", "Step", "Target", "main", "plan_traffic",
           "plain_keys", "simulate", "simulate_history"]
