"""Unsubstituted macros: a platform's placeholder left in a value instead of the value.

Platforms write their macros in many syntaxes (`{clickid}`, `##CLICK_ID##`, `[%UID%]`,
`(clickid)`, `${(id)!}`...); a postback whose platform did not fill one sends the macro text
itself. `find_macro` names the first one in a value, for `clickledger partner check` and for
anything else that must tell a value from a template left unfilled.
"""

from __future__ import annotations

import re

_NAME = r"[A-Za-z_][\w.:~+-]*"
# Longest forms first, so `{{x}}` is named whole rather than as `{x}`.
_MACRO_RE = re.compile(
    "|".join([
        r"\$\{\([^()]*\)!?\}",            # ${(name)!}     Branch (FreeMarker)
        rf"\{{\{{\s*{_NAME}\s*\}}\}}",    # {{name}}
        rf"\{{{_NAME}(?::[^{{}}]*)?\}}",  # {name}, {name:param}   most networks, Keitaro
        r"\$\{[^{}]*\}",                  # ${name}
        rf"\[%{_NAME}%\]",                # [%UID%]        BitLabs
        rf"\[{_NAME}\]",                  # [USER_ID]      ironSource
        rf"##{_NAME}##",                  # ##CLICK_ID##
        rf"#{_NAME}#",                    # #s2#           CAKE
        rf"%%{_NAME}%%",                  # %%CLICK_ID%%
        rf"%{_NAME}%",                    # %CLICK_ID%
        rf"\${_NAME}\$",                  # $CLICKID$
        rf"@{_NAME}@",                    # @clickid@
        rf"<{_NAME}>",                    # <clickid>
        r"__[A-Za-z][A-Za-z0-9_]*__",     # __CLICK_ID__
        rf"\({_NAME}\)",                  # (clickid)      AppsFlyer
        r"\b(?:REPLACE|OPTIONAL)\b",      # Voluum's and other trackers' template words
    ]),
)


def find_macro(value: str | None) -> str | None:
    """The first unsubstituted macro in `value` (as written, e.g. "{clickid}"), else None."""
    if not value:
        return None
    match = _MACRO_RE.search(value)
    return match.group(0) if match else None
