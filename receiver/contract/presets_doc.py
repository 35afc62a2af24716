"""docs/integrations.md's table of platforms, rendered from the preset files.

The document holds the table between `<!-- presets:table -->` and `<!-- /presets:table -->`;
everything else in it is written by hand. A test fails when the table differs from the presets
in receiver/contract/presets/; to rewrite it:

    python -m receiver.contract.presets_doc docs/integrations.md
"""

from __future__ import annotations

import re
import sys
from typing import NoReturn

from receiver.contract.profiles import (
    PROFILE_STATUSES,
    Answer,
    PartnerProfile,
    load_preset,
    postback_url,
    preset_names,
    resolve_profile,
)
from receiver.contract.record_doc import rewrite_doc

# What each signature scheme checks (receiver/signatures.py has the code and its sources).
SCHEMES = {
    "none": "none: the key in the URL authenticates it",
    "clickledger": "our `X-Signature` (HMAC-SHA256, docs/endpoints.md)",
    "tapjoy": "`verifier` = md5(`id:snuid:currency:secret`)",
    "ironsource": "`signature` = md5(timestamp + eventId + userId + rewards + private key)",
    "ayet": "`X-Ayetstudios-Security-Hash` = HMAC-SHA256 of the sorted query (publisher API key)",
    "bitlabs": "`hash` = HMAC-SHA1 of the whole URL (app secret)",
    "cpx": "`hash` = md5(trans_id + `-` + secure hash key)",
}
PUBLIC_URL = "PUBLIC_URL"  # stands for config.toml's public_url in the table
KEY = "KEY"  # stands for the partner's api key
_BLOCK_RE = re.compile(r"(<!-- presets:table -->\n)(?P<body>.*?)(<!-- /presets:table -->)", re.S)


def preset_profile(name: str) -> tuple[PartnerProfile, bool]:
    """The profile (and status_updates) of a partner that sets only `preset = name` (and the
    secret its signature scheme needs)."""
    scheme = load_preset(name).keys.signature_scheme

    def fail(message: str, path: tuple[str, ...]) -> NoReturn:
        raise ValueError(f"preset {name!r}: {message}")

    return resolve_profile({"preset": name}, fail, has_secret=scheme not in (None, "none", "clickledger"))


def _statuses(profile: PartnerProfile, updates: bool) -> str:
    if not profile.params["status"]:
        text = "no status parameter: every postback is approved"
    else:
        names = " or ".join(f"`{n}`" for n in profile.params["status"])
        lists = [f"{status}: " + ", ".join(f"`{v}`" for v, s in profile.statuses.items() if s == status)
                 for status in PROFILE_STATUSES if status in profile.statuses.values()]
        text = f"{names}: " + "; ".join(lists) + "; any other value: unknown (not counted)"
    if profile.amounts.negative == "reversal":
        text += f"; a negative amount reverses the transaction in `{profile.amounts.reverses[0]}`"
        if profile.amounts.reversal_prefix:
            text += f" (or its id prefixed `{profile.amounts.reversal_prefix}`)"
    if updates:
        text += "; status updates (a later rejected is a reversal)"
    return text


def _answer(answer: Answer | None, default: str) -> str:
    if answer is None or (answer.status is None and answer.body is None):
        return default
    status = answer.status if answer.status is not None else "ours"
    return f"{status} `{answer.body}`" if answer.body is not None else f"{status} with our JSON"


def _answers(profile: PartnerProfile) -> str:
    answers = profile.answers
    parts = [f"success: {_answer(answers.success, '200 JSON')}",
             f"refusal: {_answer(answers.refusal, '4xx JSON (docs/endpoints.md)')}"]
    if answers.permanent_refusal is not None:
        parts.append(f"a refusal no retry can fix: {_answer(answers.permanent_refusal, '')}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "&#124;").replace("\n", " ")


def render_table() -> str:
    """The Markdown table of every shipped preset."""
    rows = ["| preset | the URL to paste into the platform | statuses | signature | answers | built from |",
            "|---|---|---|---|---|---|"]
    for name in preset_names():
        profile, updates = preset_profile(name)
        docs = " ".join(f"[{i}]({url})" for i, url in enumerate(profile.docs, 1))
        cells = [f"`{name}`", f"`{postback_url(profile, PUBLIC_URL, KEY)}`", _statuses(profile, updates),
                 SCHEMES[profile.signature_scheme], _answers(profile), docs]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def render_doc(text: str) -> str:
    """`text` with its presets table rendered again; ValueError when the markers are missing."""
    if not _BLOCK_RE.search(text):
        raise ValueError("no <!-- presets:table --> ... <!-- /presets:table --> block")
    return _BLOCK_RE.sub(lambda m: m[1] + render_table() + m[3], text)


def main(argv: list[str]) -> int:
    return rewrite_doc(argv, render_doc, "python -m receiver.contract.presets_doc docs/integrations.md",
                       "receiver/contract/presets/")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
