"""Unsubstituted macros: a tracker's placeholder sent as it is, instead of the value it stands for.

Platforms write their macros in many syntaxes: `{clickid}` (Keitaro, Voluum, RedTrack...),
`{{click_id}}`, `[clickid]`, `[%UID%]`, `##CLICK_ID##`, `#clickid#`, `${(clickid)!}`
(FreeMarker), `(clickid)`, `%CLICKID%`, `%%CLICKID%%`, `$CLICKID$`, `@clickid@`, `<clickid>`,
`__CLICK_ID__`, a brace pair percent-encoded once more (`%7Bclickid%7D`), and the template
words of postback URL examples left in (`REPLACE`, `OPTIONAL`). `find_macro` finds one in a
parameter's value; the receiver refuses a click id or an amount that holds one
(`unsubstituted_macro`) and the pipeline names any other field that holds one.

Real values must never read as macros: a UUID, a number, an email address, a URL, base64 with
its `=` padding, a status word. So each syntax needs a macro *name* between its delimiters
(a letter or `_` first, then letters, digits, `_`, `.`, `-`); the syntaxes that ordinary text
also uses are narrower still: `(x)` only as the whole value, `%X%` and `$X$` only with an
upper-case name, and the template words only as whole words in capitals.
"""

from __future__ import annotations

import re

_NAME = r"[A-Za-z_][\w.\-]*"
_UPPER = r"[A-Z_][A-Z0-9_]*"

# Searched anywhere in the value (a macro may be a part of it: "order-{txid}"), most specific first.
_ANYWHERE = re.compile(
    "|".join((
        rf"\$\{{\(?\s*{_NAME}\s*\)?!?\}}",  # ${x}, ${(x)!}
        rf"\{{\{{\s*{_NAME}\s*\}}\}}",  # {{x}}
        rf"\{{\s*{_NAME}(?:\s*[|:]\s*[^{{}}]*)?\s*\}}",  # {x}, {x|default}
        rf"%7B\s*{_NAME}\s*%7D",  # {x} percent-encoded once more
        rf"\[%\s*{_NAME}\s*%\]",  # [%X%]
        rf"\[{_NAME}\]",  # [x]
        rf"##{_NAME}##",  # ##X##
        rf"#{_NAME}#",  # #x#
        rf"%%{_UPPER}%%",  # %%X%%
        rf"%{_UPPER}%",  # %X%
        rf"\${_UPPER}\$",  # $X$
        rf"@{_NAME}@",  # @x@
        rf"<{_NAME}>",  # <x>
        r"__[A-Z][A-Z0-9_]*?__",  # __X__
        r"(?<![A-Za-z0-9])(?:REPLACE|OPTIONAL)(?:_[A-Z0-9_]*)?(?![A-Za-z0-9])",  # template words: REPLACE_ME
    )),
)
_ENCODED_BRACES = re.compile(rf"%7B\s*{_NAME}\s*%7D", re.IGNORECASE)  # %7b...%7d too
# Only as the whole value: parentheses are ordinary text too ("order (gift)").
_WHOLE = re.compile(rf"\(\s*{_NAME}\s*\)")
# Any character a macro syntax needs: a value without one is no macro (the usual value, fast).
_DELIMITERS = frozenset("{}[]#%$@<>()_RO")


def find_macro(value: str) -> str | None:
    """The first unsubstituted macro in `value` (its text, e.g. "{payout}"), or None."""
    if not isinstance(value, str) or not _DELIMITERS.intersection(value):
        return None
    text = value.strip()
    match = _ANYWHERE.search(text) or _ENCODED_BRACES.search(text)
    if match is not None:
        return match.group(0)
    if _WHOLE.fullmatch(text):
        return text
    return None
