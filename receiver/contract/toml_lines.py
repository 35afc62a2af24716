"""Where a key stands in a TOML file: tomllib reports values, never their lines.

The config's validation names the line of each problem with this, so a person goes straight
to the typo.
"""

from __future__ import annotations

import re


class TomlLocator:
    """Finds the line of a key inside the n-th [[table]], since tomllib reports no positions.

    A key may be written `key = ...`, as a dotted key (`key.part = ...`) or as a sub-table
    header (`[table.key]`); when its own line cannot be found, the entry's `[[table]]`
    header is named, and for an inline array (`table = [{...}]`) the line of `table =`.
    """

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def line_of(self, table: str | None, index: int = 0, key: str | None = None) -> int | None:
        found = self._scan(table, index, key)
        if found is None and table is not None:
            found = self._scan(None, 0, table)  # `table = [{...}]` or `[table]`
        return found

    def _scan(self, table: str | None, index: int, key: str | None) -> int | None:
        key_re = re.compile(rf"^[\"']?{re.escape(key)}[\"']?\s*[=.]") if key is not None else None
        current, seen, header_line = None, -1, None
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                name = line.lstrip("[").split("]")[0].strip()
                if line.startswith("[[") and name == table:
                    current, seen = table, seen + 1
                    if seen == index:
                        if key is None:
                            return number
                        header_line = number
                    continue
                if key is not None and (
                    name == key if table is None else (current == table and seen == index and name == f"{table}.{key}")
                ):
                    return number
                current = name
                continue
            in_scope = (table is None and current is None) or (current == table and seen == index)
            if in_scope and key_re is not None and key_re.match(line):
                return number
        return header_line
