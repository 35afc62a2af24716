"""Which known click id did a partner probably mean? (for `postback_issues.nearest_click_id`)

A sent id is "near" a known one when, ignoring case, it is equal, one contains the
other (a click id wrapped in quotes or braces, or with junk appended), one is a prefix
or suffix of the other (a truncated id of at least 8 characters that fits only one
known id), or the two are within
Levenshtein distance 2 (a typo, measured by rapidfuzz). Ties go to the smaller distance, then to the smaller
id, so the answer is deterministic.

The distance search uses a pigeonhole index: two edits can spoil at most two of an
id's three thirds, so a candidate shares its anchored first third, its anchored last
third, or its middle third (shifted by at most 2) with the id it is near. Only those
candidates are compared, so the search stays cheap with millions of clicks.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable

import polars as pl
from rapidfuzz.distance import Levenshtein

MAX_DISTANCE = 2
MIN_AFFIX = 8
UUID_IN_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def levenshtein(a: str, b: str, limit: int = MAX_DISTANCE) -> int:
    """Edit distance of a and b, or limit + 1 when it is larger than limit (rapidfuzz's C++
    Levenshtein with a cutoff: it stops as soon as the distance is past `limit`)."""
    return Levenshtein.distance(a, b, score_cutoff=limit)


def _thirds(n: int) -> tuple[int, int]:
    return n // 3, (2 * n) // 3


class NearestClickIndex:
    def __init__(self, click_ids: Iterable[str]):
        self.original: dict[str, str] = {}
        for cid in sorted(click_ids):
            self.original.setdefault(cid.lower(), cid)
        self.forward = sorted(self.original)
        self.backward = sorted(k[::-1] for k in self.original)
        self._parts: dict[tuple[str, int, str], list[str]] | None = None

    def _index(self) -> dict[tuple[str, int, str], list[str]]:
        if self._parts is None:
            parts: dict[tuple[str, int, str], list[str]] = defaultdict(list)
            for known in self.forward:
                n = len(known)
                if n < 6:
                    continue
                i, j = _thirds(n)
                parts[("a", n, known[:i])].append(known)
                parts[("b", n, known[i:j])].append(known)
                parts[("c", n, known[j:])].append(known)
            self._parts = parts
        return self._parts

    def _prefixed(self, sent: str, keys: list[str]) -> str | None:
        """The one key starting with `sent`; None when none or several do (an ambiguous stub)."""
        pos = bisect.bisect_left(keys, sent)
        if pos < len(keys) and keys[pos].startswith(sent):
            if pos + 1 < len(keys) and keys[pos + 1].startswith(sent):
                return None
            return keys[pos]
        return None

    def find(self, sent: str | None) -> str | None:
        if not sent:
            return None
        q = sent.strip().lower()
        if q in self.original:
            return self.original[q]
        for found in UUID_IN_TEXT.findall(q):
            if found in self.original:
                return self.original[found]
        candidates: set[str] = set()
        if len(q) >= MIN_AFFIX:
            hit = self._prefixed(q, self.forward)
            if hit:
                candidates.add(hit)
            hit = self._prefixed(q[::-1], self.backward)
            if hit:
                candidates.add(hit[::-1])
            for known in (self.forward[max(0, bisect.bisect_right(self.forward, q) - 1)],) if self.forward else ():
                if q.startswith(known) and len(known) >= MIN_AFFIX:
                    candidates.add(known)
        if candidates:
            return self.original[min(candidates, key=lambda k: (abs(len(k) - len(q)), k))]
        parts = self._index()
        m = len(q)
        for n in range(max(6, m - MAX_DISTANCE), m + MAX_DISTANCE + 1):
            i, j = _thirds(n)
            candidates.update(parts.get(("a", n, q[:i]), ()))
            candidates.update(parts.get(("c", n, q[m - (n - j):] if n - j <= m else ""), ()))
            for shift in range(-MAX_DISTANCE, MAX_DISTANCE + 1):
                if i + shift >= 0:
                    candidates.update(parts.get(("b", n, q[i + shift:j + shift]), ()))
        distance = Levenshtein.distance
        scored = [(distance(q, k, score_cutoff=MAX_DISTANCE), k) for k in candidates]
        scored = [s for s in scored if s[0] <= MAX_DISTANCE]
        return self.original[min(scored)[1]] if scored else None


def index_for(click_ids: pl.Series, sent: Iterable[str]) -> NearestClickIndex:
    """A NearestClickIndex over only the known ids that `find` can reach for these sent ids.

    `find` looks at the exact id, the ids inside the text, the sorted neighbours of the
    sent id (forward and reversed) and the ids sharing a third with it; nothing else. An
    index over just those (found with vectorised Polars searches and joins) therefore
    answers exactly as one over all clicks, without a Python loop over millions of them.
    """
    queries = sorted({s.strip().lower() for s in sent if s and s.strip()})
    keys = pl.DataFrame({"original": click_ids.drop_nulls()}).with_columns(
        pl.col("original").str.to_lowercase().alias("key"))
    if not queries or keys.is_empty():
        return NearestClickIndex([])
    q = pl.Series("q", queries, dtype=pl.String)
    unique_keys = keys["key"].unique()
    # Reversed as find reverses them (code points, k[::-1]); Polars' str.reverse works on
    # graphemes and was most of this function's time.
    backward = pl.Series([k[::-1] for k in unique_keys.to_list()], dtype=pl.String)
    picked: list[pl.Series] = [q, q.str.extract_all(UUID_IN_TEXT.pattern).explode().drop_nulls()]
    for ordered, probe, flip in ((unique_keys.sort(), q, False),
                                 (backward.sort(), pl.Series([s[::-1] for s in queries]), True)):
        last = len(ordered) - 1
        left = ordered.search_sorted(probe, side="left")
        right = ordered.search_sorted(probe, side="right") - 1
        spots = pl.concat([left, left + 1, right]).cast(pl.Int64).clip(0, last).unique()
        found = ordered.gather(spots)
        picked.append(pl.Series([k[::-1] for k in found.to_list()], dtype=pl.String) if flip else found)
    picked.append(_third_candidates(unique_keys, q))
    wanted = pl.concat([s.rename("key").cast(pl.String) for s in picked]).unique()
    subset = keys.join(wanted.to_frame(), on="key", how="semi")
    return NearestClickIndex(subset["original"].to_list())


def _third_probes(queries: pl.Series) -> pl.DataFrame:
    """(part_kind, n, part) that NearestClickIndex.find looks up for each sent id, as one frame:
    for every known length n within MAX_DISTANCE of the sent id's, its anchored first and
    last thirds and its middle third shifted by up to MAX_DISTANCE."""
    q = pl.col("q")
    frame = queries.rename("q").to_frame().with_columns(q.str.len_chars().cast(pl.Int64).alias("m"))
    frame = frame.join(pl.DataFrame({"d": range(-MAX_DISTANCE, MAX_DISTANCE + 1)}), how="cross")
    frame = frame.with_columns((pl.col("m") + pl.col("d")).alias("n")).filter(pl.col("n") >= 6)
    frame = frame.with_columns((pl.col("n") // 3).alias("i"), (2 * pl.col("n") // 3).alias("j"))
    tail = pl.col("n") - pl.col("j")  # length of the last third
    middles = [
        frame.filter(pl.col("i") + shift >= 0).select(
            pl.lit("b").alias("part_kind"), "n",
            q.str.slice(pl.col("i") + shift, pl.col("j") - pl.col("i")).alias("part"))
        for shift in range(-MAX_DISTANCE, MAX_DISTANCE + 1)
    ]
    return pl.concat([
        frame.select(pl.lit("a").alias("part_kind"), "n", q.str.slice(0, pl.col("i")).alias("part")),
        frame.select(pl.lit("c").alias("part_kind"), "n",
                     pl.when(tail <= pl.col("m")).then(q.str.slice(pl.col("m") - tail))
                     .otherwise(pl.lit("")).alias("part")),
        *middles,
    ]).unique()


def _third_candidates(keys: pl.Series, queries: pl.Series) -> pl.Series:
    """Known ids sharing an anchored third with a sent id, as NearestClickIndex.find probes them."""
    probe = _third_probes(queries)
    frame = pl.DataFrame({"key": keys}).with_columns(pl.col("key").str.len_chars().cast(pl.Int64).alias("n"))
    key = pl.col("key")
    found: list[pl.Series] = []
    # Known ids have few lengths (36 for UUIDs): per length, each third is one slice of the
    # keys tested against the probes' set, with no frame of every key's three parts.
    for n in sorted(set(frame["n"].unique().to_list()) & set(probe["n"].unique().to_list())):
        if n < 6:
            continue
        i, j = _thirds(n)
        same = frame.filter(pl.col("n") == n)
        for kind, part in (("a", key.str.slice(0, i)), ("b", key.str.slice(i, j - i)), ("c", key.str.slice(j))):
            wanted = probe.filter((pl.col("part_kind") == kind) & (pl.col("n") == n))["part"]
            if len(wanted):
                found.append(same.filter(part.is_in(wanted.implode()))["key"])
    return pl.concat(found) if found else pl.Series("key", [], dtype=pl.String)
