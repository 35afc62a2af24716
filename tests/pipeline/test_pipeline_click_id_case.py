"""A postback's UUID click id in another case is the same click (issue 12): the pipeline joins it
to its click and pairs it with the receiver's deduplication, while the postbacks table keeps
the id as it was sent."""

from __future__ import annotations

import polars as pl

from pipeline.conversions import check_consistency, with_pair_keys
from pipeline.events import build_postbacks
from pipeline.staging import _row, stage_rows
from tests.support.log_builder import LogBuilder, conversions_from_records

LOWER = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def as_sent_upper(record: dict, *, default_txn: bool) -> dict:
    """A postback record as the receiver writes it for the click id sent in upper case."""
    record["fields"]["click_id"] = LOWER.upper()
    if default_txn:  # no transaction id sent: it defaults to the click id as sent
        record["fields"]["transaction_id"] = LOWER.upper()
    return record


def test_an_upper_case_postback_converts_its_click_and_a_later_lower_case_one_is_its_duplicate() -> None:
    b = LogBuilder()
    b.click(LOWER)
    as_sent_upper(b.postback(LOWER, amount="10", status="approved"), default_txn=True)
    b.postback(LOWER, amount="10", status="approved", result="duplicate")  # the receiver said duplicate
    conversions = conversions_from_records(b.records)  # raised "a duplicate never recorded" before
    assert conversions.height == 1
    row = conversions.row(0, named=True)
    assert (row["click_id"], row["transaction_id"]) == (LOWER, LOWER)
    assert row["counts"] and row["duplicates"] == 1 and row["partner_id"] == "acme"


def test_the_postbacks_table_keeps_the_click_id_as_sent() -> None:
    b = LogBuilder()
    b.click(LOWER)
    as_sent_upper(b.postback(LOWER, transaction_id="T-1", amount="5"), default_txn=False)
    events = stage_rows([_row(r, "segment-00000001.ndjson", i) for i, r in enumerate(b.records, start=1)])
    assert check_consistency(events) == []
    postbacks = build_postbacks(events)
    assert postbacks["click_id"].to_list() == [LOWER.upper()]
    assert conversions_from_records(b.records)["click_id"].to_list() == [LOWER]


def test_pair_keys_leave_other_ids_and_explicit_transaction_ids_alone() -> None:
    frame = pl.DataFrame({
        "click_id": [LOWER.upper(), LOWER.upper(), "CUSTOM-ID", LOWER, "0A1B"],
        "transaction_id": [LOWER.upper(), "TXN-A", "CUSTOM-ID", LOWER, "X"],
    })
    assert with_pair_keys(frame).rows() == [
        (LOWER, LOWER), (LOWER, "TXN-A"), ("CUSTOM-ID", "CUSTOM-ID"), (LOWER, LOWER), ("0A1B", "X"),
    ]
