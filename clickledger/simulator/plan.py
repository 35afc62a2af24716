"""The traffic plan: every request a simulation sends, decided before any is sent, as a pure
function of the config, the partners' keys and a seed (`plan_traffic`).

The online simulator, the in-process history and the offline generator all send this plan.
It holds clicks (mostly good, some the receiver must turn away), the earn app's tracks,
postbacks in all five seed dialects with their follow-ups (resent, late, reversed) and every
mistake a partner makes (wrong or missing key, typos of click ids, unfilled macros, wrong
campaign, wrong path), each step with the answer its scenario expects.
"""

from __future__ import annotations

import random
import tomllib
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path
from typing import Any
from urllib.parse import quote

from clickledger.simulator.dialects import BUILDERS, WRONG_PATHS, Post
from clickledger.simulator.steps import (
    CLICK,
    DIALECT_PATHS,
    DIALECTS,
    EARN_POSTBACK,
    RECORDED,
    Step,
    Target,
)
from receiver.contract.config import Config, ConfigError, Link, Product, User
from receiver.contract.config_file import load_config
from receiver.contract.datadir import DataDir

WAVES = 4  # clicks go out in waves; a wave's postbacks follow with the next one
# The demo partner written for each seed system; other configs get a fallback choice.
PREFERRED = {"network": "acme", "publisher": "moustache", "peerclick": "peerclick",
             "advertiser": "clickwall"}
MACROS = ("{click_id}", "%7Bclick_id%7D", "[click_id]", "${click_id}", "#click_id#")
CURRENCIES = ("USD", "EUR", "GBP")
NO_FX_CURRENCY = "BRL"  # the demo's fx_rates.csv has no rate for it

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
APP_AGENT = "Dart/3.4 (dart:io)"


class SimulationError(Exception):
    """The simulation cannot start: no usable config, or no healthy receiver at the URL."""


@dataclass(frozen=True)
class _Slot:
    """A planned click whose postbacks are planned too."""

    step: int
    wave: int
    target: Target


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


def load(data_dir: Path) -> tuple[Config, dict[str, str]]:
    """The config and the partners' plaintext keys, or a SimulationError saying what is missing."""
    path = DataDir(data_dir).config_path
    try:
        return load_config(path), plain_keys(path)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as exc:
        raise SimulationError(f"cannot use the config: {exc}") from None


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

    def _base(self, target: Target) -> Post:
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
        return Post(target, status=self._status(target.dialect, "approved"),
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

    def _unknown_click_answer(self, post: Post) -> str:
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
                  post: Post, mutation: tuple[Any, ...] | None = None) -> Step:
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



__all__ = ["MACROS", "SimulationError", "earn_targets", "link_targets", "load", "plain_keys",
           "plan_traffic"]
