"""The summary of a simulation: requests by kind, dialect and scenario, the answers, and
each answer its scenario did not expect, with an example request."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from clickledger.simulator.sending import TIME_LIMIT, Outcome
from clickledger.simulator.steps import DIALECTS, RECORDED

KIND_ORDER = ("health", "click", "track", "postback")
COLUMN_ORDER = ("link", "earn", *(d for d in DIALECTS if d != "earn"))  # clicks, then postbacks
SCENARIO_ORDER = (
    "healthz", "status_check",
    "link", "paused_offer", "unknown_slug", "earn", "no_token", "bad_token", "bad_task_url",
    "track", "conversion", "pending", "rejected", "no_fx_currency", "duplicate", "late", "reversal",
    "test", "wrong_key", "other_partner_key", "missing_key", "missing_click_id", "unknown_click", "macro",
    "wrong_campaign", "missing_campaign", "wrong_path",
)


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

    def add(self, outcome: Outcome) -> None:
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


__all__ = ["SimulationSummary"]
