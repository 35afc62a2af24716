"""docs/log-format.md's tables of members and fields, rendered from receiver.contract.record.

The document holds each table between markers, `<!-- contract:NAME -->` and
`<!-- /contract:NAME -->`; everything else in it is written by hand. A test fails when a
table differs from the contract; to rewrite them:

    python -m receiver.contract.record_doc docs/log-format.md
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from receiver.contract.record import (
    ANY_RECORD_FIELDS,
    CLICK_FIELDS,
    HTTP_ERROR_FIELDS,
    MEMBERS,
    POSTBACK_FIELDS,
    PROBE_FIELDS,
    TRACK_FIELDS,
    Definition,
    Shape,
)

BLOCKS: dict[str, tuple[str, Shape]] = {
    "members": ("member", MEMBERS),
    "click-fields": ("field", CLICK_FIELDS),
    "track-fields": ("field", TRACK_FIELDS),
    "postback-fields": ("field", POSTBACK_FIELDS),
    "probe-fields": ("field", PROBE_FIELDS),
    "http-error-fields": ("field", HTTP_ERROR_FIELDS),
    "any-record-fields": ("field", ANY_RECORD_FIELDS),
}
_BLOCK_RE = re.compile(r"(<!-- contract:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /contract:(?P=name) -->)", re.S)


def _row(definition: Definition) -> str:
    kind = definition.type + (" or null" if definition.nullable else "")
    meaning = definition.meaning + (f" ({definition.only} only)" if definition.only else "")
    return f"| `{definition.name}` | {kind} | {meaning.replace('|', '&#124;')} |"


def render_table(heading: str, shape: Shape) -> str:
    """A Markdown table of `shape`: name, type (and whether it may be null), meaning."""
    return "\n".join([f"| {heading} | type | meaning |", "|---|---|---|", *map(_row, shape)]) + "\n"


def render_doc(text: str) -> str:
    """`text` with every contract table rendered again; ValueError when a table is missing."""
    found: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ValueError(f"unknown contract table {name!r} (known: {', '.join(BLOCKS)})")
        found.add(name)
        return match[1] + render_table(*BLOCKS[name]) + match[4]

    rendered = _BLOCK_RE.sub(replace, text)
    missing = BLOCKS.keys() - found
    if missing:
        raise ValueError("no table for " + ", ".join(f"<!-- contract:{name} -->" for name in sorted(missing)))
    return rendered


def rewrite_doc(argv: list[str], render: Callable[[str], str], usage: str, source: str) -> int:
    """The command line of a rendered document: `render` the file named in argv and write it back
    when it changed (exit 0); exit 2 with a message on a usage error or a render failure."""
    if len(argv) != 1:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        text = path.read_text(encoding="utf-8")
        rendered = render(text)
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if rendered != text:
        path.write_text(rendered, encoding="utf-8")
        print(f"{path}: tables rewritten from {source}")
    return 0


def main(argv: list[str]) -> int:
    return rewrite_doc(argv, render_doc, "python -m receiver.contract.record_doc docs/log-format.md",
                       "receiver/contract/record.py")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
