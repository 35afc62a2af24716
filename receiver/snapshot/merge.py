"""Merging shares of the indexes (a base and sidecars, in log order) into one.

The base's clicks are already sorted and numbered: the runs' clicks are renumbered into
the base's combo and user tables, sorted, and spliced into the base's arrays between
memory copies of it, rather than sorting every click again.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from receiver.indexes import KEY_BYTES, ROW, ROW_BYTES, bucket_offsets, lower_bound
from receiver.snapshot.index_file import IndexData


def merge(base: IndexData | None, runs: list[IndexData]) -> IndexData:
    """One IndexData covering `base` then `runs` in order; later clicks with the same id win.

    Cost: the runs' clicks one by one (a remap, a dict, a sort, a binary search each) plus
    memory copies of the base; so a base of 10M plus a few segments merges in a second.
    """
    base = base or IndexData(covers=[])
    combo_ids = {c: i for i, c in enumerate(base.combos)}
    user_ids = {u: i for i, u in enumerate(base.users)}
    fresh: dict[bytes, bytes] = {}  # the runs' UUID clicks: key -> row in the merged numbering
    for run in runs:
        _add_clicks(fresh, run, _renumbering(run.combos, combo_ids), _renumbering(run.users, user_ids))
    keys, rows = _spliced(base, fresh)
    return IndexData(
        covers=list(chain(base.covers, *(run.covers for run in runs))),
        top_seq=max([base.top_seq, *(run.top_seq for run in runs)]),
        keys=keys,
        rows=rows,
        combos=list(combo_ids),
        users=list(user_ids),
        others=_merged_others(base, runs),
        conversions=list(chain(base.conversions, *(run.conversions for run in runs))),
        bad_lines=list(chain(base.bad_lines, *(run.bad_lines for run in runs))),
        offsets=base.offsets if keys is base.keys and base.offsets is not None else bucket_offsets(keys),
    )


def _renumbering(items: list[Any], ids: dict[Any, int]) -> list[int]:
    """A run's table index -> the merged table's, adding the items the merged table lacks."""
    return [ids.setdefault(item, len(ids)) for item in items]


def _add_clicks(fresh: dict[bytes, bytes], run: IndexData, combo_map: list[int], user_map: list[int]) -> None:
    """Put the run's clicks into `fresh`, their rows renumbered; a click replaces an earlier one's."""
    keys, rows = run.keys, run.rows
    key_offsets = range(0, run.n * KEY_BYTES, KEY_BYTES)
    row_offsets = range(0, run.n * ROW_BYTES, ROW_BYTES)
    # Insertion order does not matter: `fresh` is sorted before the splice.
    if combo_map == list(range(len(combo_map))) and user_map == list(range(len(user_map))):
        for key_at, row_at in zip(key_offsets, row_offsets, strict=True):  # same numbering: copy the row
            fresh[keys[key_at:key_at + KEY_BYTES]] = rows[row_at:row_at + ROW_BYTES]
    else:
        for key_at, row_at in zip(key_offsets, row_offsets, strict=True):
            combo, user, expires = ROW.unpack_from(rows, row_at)
            fresh[keys[key_at:key_at + KEY_BYTES]] = ROW.pack(combo_map[combo], user_map[user], expires)


def _spliced(base: IndexData, fresh: dict[bytes, bytes]) -> tuple[bytes, bytes]:
    """The base's sorted keys and rows with the fresh clicks in their places (the base's own
    arrays when there is nothing fresh)."""
    new_keys = sorted(fresh)
    if not new_keys:
        return base.keys, base.rows
    if base.n == 0:
        return b"".join(new_keys), b"".join([fresh[k] for k in new_keys])
    return _splice(base, new_keys, fresh)


def _splice(base: IndexData, new_keys: list[bytes], fresh: dict[bytes, bytes]) -> tuple[bytes, bytes]:
    """Copies of the base between the new clicks, each found by a binary search in its bucket;
    a new click with an id the base has replaces the base's."""
    old_keys, old_rows = memoryview(base.keys), memoryview(base.rows)
    offsets = base.offsets if base.offsets is not None else bucket_offsets(base.keys)
    key_parts: list[Any] = []
    row_parts: list[Any] = []
    base_keys, base_n = base.keys, base.n
    prev = 0  # the base's clicks before `prev` are copied
    for key in new_keys:
        bucket = (key[0] << 8) | key[1]
        end = offsets[bucket + 1]
        pos = lower_bound(base_keys, key, max(prev, offsets[bucket]), end) if prev <= end else prev
        key_parts.append(old_keys[prev * KEY_BYTES:pos * KEY_BYTES])
        row_parts.append(old_rows[prev * ROW_BYTES:pos * ROW_BYTES])
        key_parts.append(key)
        row_parts.append(fresh[key])
        same = pos < base_n and base_keys[pos * KEY_BYTES:(pos + 1) * KEY_BYTES] == key
        prev = pos + 1 if same else pos  # the same id again: the newer click replaces the base's
    key_parts.append(old_keys[prev * KEY_BYTES:])
    row_parts.append(old_rows[prev * ROW_BYTES:])
    return b"".join(key_parts), b"".join(row_parts)


def _merged_others(base: IndexData, runs: list[IndexData]) -> list[list[Any]]:
    """The clicks whose id is not a UUID, in order of their latest click: a later one replaces
    an earlier one and moves to the end, as in the log."""
    others: dict[Any, list[Any]] = {o[0]: o for o in base.others}
    for run in runs:
        for other in run.others:
            others.pop(other[0], None)
            others[other[0]] = other
    return list(others.values())
