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

    def line_of_path(self, table: str | None, index: int, path: tuple[str, ...] | list[str]) -> int | None:
        """The line of a key nested in the n-th [[table]] entry (the top of the file when table
        is None), e.g. ("statuses", "approved") of a partner.

        The key may be written under a sub-table header (`[partners.statuses]` then
        `approved = ...`), dotted (`statuses.approved = ...`) or inside an inline table
        (`statuses = { approved = [...] }`: that line). The deepest line found on the way to
        the key wins; without one, the entry's own `[[table]]` line (None at the top).
        """
        target = tuple(path)
        best_depth, best_line = -1, None
        in_scope, scope, seen = table is None, (), -1
        entry_line = None
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                is_array = line.startswith("[[")
                name = line.lstrip("[").split("]")[0].strip()
                parts = _key_parts(name)
                if table is None:
                    in_scope, scope = not is_array, tuple(parts)
                elif is_array and name == table:
                    seen += 1
                    in_scope, scope = seen == index, ()
                    if in_scope:
                        entry_line = number
                    continue
                elif parts[:1] == [table] and seen == index and entry_line is not None:
                    in_scope, scope = True, tuple(parts[1:])
                else:
                    in_scope = False
                if in_scope and scope and target[:len(scope)] == scope and len(scope) > best_depth:
                    best_depth, best_line = len(scope), number
                continue
            if not in_scope:
                continue
            match = _KEY_RE.match(line)
            if match is None:
                continue
            full = scope + tuple(_key_parts(match.group(1)))
            if target[:len(full)] == full and len(full) > best_depth:
                best_depth, best_line = len(full), number
        return best_line if best_line is not None else entry_line


_KEY_RE = re.compile(r"((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")


def _key_parts(key: str) -> list[str]:
    """The parts of a dotted TOML key, unquoted: `a."b.c"` -> ["a", "b.c"]."""
    return [part.strip().strip("\"'") for part in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", key)]


def line_of_nested(locator: TomlLocator, table: str, index: int, sub: str, sub_index: int,
                   key: str | None = None) -> int | None:
    """The line of `key` in the `sub_index`-th [[table.sub]] of the `index`-th [[table]]
    (e.g. the url of an affiliate's second [[affiliates.postbacks]]); without the key, that
    sub-table's header; without the header (an inline array), the line of `sub =`."""
    nested = f"{table}.{sub}"
    key_re = re.compile(rf"^[\"']?{re.escape(key)}[\"']?\s*=") if key is not None else None
    seen, sub_seen, header = -1, -1, None
    in_entry = in_sub = False
    for number, raw in enumerate(locator.lines, start=1):
        line = raw.strip()
        if line.startswith("["):
            name = line.lstrip("[").split("]")[0].strip()
            is_array = line.startswith("[[")
            if is_array and name == table:
                seen += 1
                in_entry, in_sub = seen == index, False
            elif is_array and name == nested and in_entry:
                sub_seen += 1
                in_sub = sub_seen == sub_index
                if in_sub:
                    header = number
                    if key_re is None:
                        return number
            elif not name.startswith(f"{nested}."):
                in_entry = in_entry and name.startswith(f"{table}.")
                in_sub = False
            continue
        if in_sub and key_re is not None and key_re.match(line):
            return number
    return header or locator.line_of_path(table, index, (sub,))
