"""Property tests: dedup, status updates and the credit ledger are idempotent and order-independent."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.conversions import STATUS_RANK
from pipeline.nearest import levenshtein
from pipeline.wallet import credit_batch, ledger_path, read_ledger
from tests.support.log_builder import LogBuilder, cid, conversions_from_records

RAW_STATUSES = ["approved", "confirmed", "pending", "hold", "rejected", "reversed", "weird", None]
PROFILE = settings(max_examples=25, deadline=None)
ORDER_FREE = ["click_id", "transaction_id", "status", "counts", "amount", "amount_base", "affiliate_payout_base",
              "duplicates", "converted_at", "event_id"]

pairs = st.lists(
    st.tuples(
        st.sampled_from(RAW_STATUSES),  # status of the recorded postback
        st.lists(st.sampled_from(RAW_STATUSES), max_size=4),  # statuses of the later postbacks
        st.booleans(),  # the partner's status_updates
        st.sampled_from(["10", "0.5", "123.45678901"[:10]]),
    ),
    min_size=1,
    max_size=4,
)


def build(spec, order: list[int]) -> list[dict]:
    """Records: clicks and recorded postbacks first, then every later postback in `order`, seq reassigned."""
    b = LogBuilder()
    later = []
    for i, (first, updates, allowed, amount) in enumerate(spec, start=1):
        b.click(cid(i), offer_id="moustache-survey")
        b.postback(cid(i), status=first, amount=amount, status_updates=allowed, dialect="publisher")
        later += [(i, s, allowed) for s in updates]
    for index in order:
        i, status, allowed = later[index]
        b.postback(cid(i), status=status, result="duplicate", status_updates=allowed, dialect="publisher")
    return b.records


def later_count(spec) -> int:
    return sum(len(u) for _, u, _, _ in spec)


@PROFILE
@given(spec=pairs, data=st.data())
def test_shuffled_duplicate_postbacks_give_the_same_conversions(spec, data):
    n = later_count(spec)
    order = data.draw(st.permutations(list(range(n))))
    straight = conversions_from_records(build(spec, list(range(n))))
    shuffled = conversions_from_records(build(spec, list(order)))
    assert straight.select(ORDER_FREE).equals(shuffled.select(ORDER_FREE))
    # without status updates nothing depends on order, the history included
    fixed = [i for i, (_, _, allowed, _) in enumerate(spec) if not allowed]
    keep = pl.col("click_id").is_in([cid(i + 1) for i in fixed])
    assert straight.filter(keep).equals(shuffled.filter(keep))


@PROFILE
@given(spec=pairs)
def test_final_status_is_the_furthest_allowed_step(spec):
    conversions = conversions_from_records(build(spec, list(range(later_count(spec)))))
    from receiver.contract.params import normalise_status

    for i, (first, updates, allowed, _) in enumerate(spec, start=1):
        row = conversions.filter(pl.col("click_id") == cid(i)).row(0, named=True)
        start = normalise_status(first)
        steps = [normalise_status(s) for s in updates if normalise_status(s) in ("approved", "rejected")]
        expected = max([start, *steps] if allowed else [start], key=STATUS_RANK.__getitem__)
        assert row["status"] == expected
        assert row["status_history"][0] == start and row["status_history"][-1] == expected
        ranks = [STATUS_RANK[s] for s in row["status_history"]]
        assert ranks == sorted(set(ranks))  # strictly forward
        assert row["duplicates"] == len(updates)


@PROFILE
@given(spec=pairs)
def test_derivation_is_idempotent(spec):
    records = build(spec, list(range(later_count(spec))))
    assert conversions_from_records(records).equals(conversions_from_records(records))


earn_specs = st.lists(st.tuples(st.sampled_from(["u1", "u2"]), st.sampled_from(["completed", "pending", "rejected"]),
                                st.sampled_from(["1", "2.5", "9.99", "0.03"]),
                                st.sampled_from([None, "reversed", "completed"])),
                      min_size=1, max_size=5)


def earn_log(spec, with_updates: bool) -> LogBuilder:
    b = LogBuilder()
    for i, (user, status, amount, _) in enumerate(spec, start=1):
        b.click(cid(i), offer_id="taskwall-tasks", user_id=user, product_id="task-1", ttl_hours=24)
        b.postback(cid(i), status=status, amount=amount, dialect="earn", status_updates=True)
    if with_updates:
        for i, (_, _, _, update) in enumerate(spec, start=1):
            if update:
                b.postback(cid(i), status=update, result="duplicate", dialect="earn", status_updates=True)
    return b


@PROFILE
@given(spec=earn_specs, cut=st.floats(min_value=0, max_value=1))
def test_credit_batches_are_idempotent_and_crash_safe(spec, cut):
    now = datetime(2024, 5, 3, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        conv = conversions_from_records(earn_log(spec, with_updates=False).records)
        credit_batch(data, conv, base_currency="USD", now=now, batch_id="one")
        path = ledger_path(data)
        after_one = path.stat().st_size if path.exists() else 0
        conv = conversions_from_records(earn_log(spec, with_updates=True).records)  # later: reversals arrive
        credit_batch(data, conv, base_currency="USD", now=now, batch_id="two")
        complete = path.read_bytes() if path.exists() else b""
        full = {e["entry_id"] for e in read_ledger(path).entries}
        # a second batch credits nothing new
        assert credit_batch(data, conv, base_currency="USD", now=now, batch_id="three").appended == []
        assert (path.read_bytes() if path.exists() else b"") == complete
        # a crash half way through batch two (batch one was acknowledged): the retry ends with
        # the same entries, each once
        path.write_bytes(complete[: after_one + int((len(complete) - after_one) * cut)])
        credit_batch(data, conv, base_currency="USD", now=now, batch_id="retry")
        entries = read_ledger(path).entries
        ids = [e["entry_id"] for e in entries]
        assert len(ids) == len(set(ids))
        assert set(ids) == full
        # at most one credit and one debit per conversion; a debit only after a credit
        for i in range(1, len(spec) + 1):
            kinds = [e["kind"] for e in entries if e["click_id"] == cid(i)]
            assert kinds in ([], ["credit"], ["credit", "debit"])


def _full_levenshtein(a: str, b: str) -> int:
    """The textbook table, every cell: the reference for the banded, trimmed one."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab-01\u00e9", max_size=14), st.text(alphabet="ab-01\u00e9", max_size=14),
       st.integers(min_value=0, max_value=3))
def test_levenshtein_equals_the_full_table_up_to_its_limit(a, b, limit):
    assert levenshtein(a, b, limit) == min(_full_levenshtein(a, b), limit + 1)


@settings(max_examples=300, deadline=None)
@given(st.uuids().map(str), st.lists(st.tuples(st.sampled_from("sdi"), st.integers(0, 40),
                                               st.sampled_from("0af-")), max_size=3))
def test_levenshtein_of_edited_ids(click_id, edits):
    sent = click_id
    for kind, pos, char in edits:  # substitute, delete or insert near a random place
        pos %= len(sent) + 1
        sent = (sent[:pos] + char + sent[pos + 1:] if kind == "s" else
                sent[:pos] + sent[pos + 1:] if kind == "d" else sent[:pos] + char + sent[pos:])
    assert levenshtein(click_id, sent) == min(_full_levenshtein(click_id, sent), 3)


def test_edit_distances_come_from_rapidfuzz():
    """Issue 13: the nearest-click search's distances are rapidfuzz's C++ Levenshtein (with a cutoff),
    not a Python table; the properties above hold it to the full table."""
    from rapidfuzz.distance import Levenshtein

    import pipeline.nearest as nearest

    assert nearest.Levenshtein is Levenshtein
    assert levenshtein("0" * 5000, "1" * 5000) == 3  # a long pair is cut off at once
