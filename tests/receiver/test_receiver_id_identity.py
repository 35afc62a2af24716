"""Ids are compared as the exact bytes sent (issue 15): transaction ids that differ only in bytes that
are not UTF-8 are distinct conversions, in the query, a form body and a JSON body alike, in the
receiver's answers (recorded or duplicate), in its index after a restart (rebuilt from the log), and
in the pipeline's conversions table. Such an id is kept as text that gives its bytes back
(receiver.contract.record.escape_bytes): `caf%E9` is `caf\\xe9`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

import pipeline
from pipeline import staging
from receiver.contract.params import exact_text, parse_query
from receiver.contract.record import unescape_bytes

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


def answer(h: Any, *, query: str = "", body: bytes = b"", headers: dict[str, str] | None = None) -> str:
    """"recorded" or "duplicate" (asserting a 200), for one postback to /api/postback."""
    method = "POST" if body else "GET"
    resp = h.raw(method, "/api/postback", query_string=query, body=body, headers=headers or {})
    assert resp.status_code == 200, (query, body, resp.text)
    return resp.json["result"]


def send_ids(h: Any, cid: str) -> list[tuple[str, str]]:
    """(what was sent, the answer) for ids that differ only in bytes that are not UTF-8."""
    base = f"api_key=key-alpha&click_id={cid}"
    sent: list[tuple[str, str]] = []
    for txn in ("caf%E9", "caf%E8", "caf%FF", "caf%E9",  # the audit's three, then the first again
                "caf%EF%BF%BD",  # U+FFFD itself, valid UTF-8: what the three used to become
                "caf%5Cxe9",  # the text `caf\xe9` typed with a backslash: not the byte E9
                "caf%C3%A9"):  # café, valid UTF-8
        sent.append((f"query {txn}", answer(h, query=f"{base}&transaction_id={txn}")))
    for body in (b"transaction_id=form%E9", b"transaction_id=form%E8", b"transaction_id=form\xe8",  # raw = %E8
                 b"transaction_id=form%E9%E9"):
        sent.append((f"form {body!r}", answer(h, query=base, body=body, headers=FORM)))
    for value in (b"json\xe9", b"json\xe8", b"json\\udcff", b"json\\udce9", b"json\xe8"):
        body = b'{"api_key": "key-alpha", "click_id": "' + cid.encode() + b'", "transaction_id": "' + value + b'"}'
        sent.append((f"json {value!r}", answer(h, body=body, headers=JSON)))
    return sent


EXPECTED = [
    ("query caf%E9", "recorded"), ("query caf%E8", "recorded"), ("query caf%FF", "recorded"),
    ("query caf%E9", "duplicate"), ("query caf%EF%BF%BD", "recorded"), ("query caf%5Cxe9", "recorded"),
    ("query caf%C3%A9", "recorded"),
    ("form b'transaction_id=form%E9'", "recorded"), ("form b'transaction_id=form%E8'", "recorded"),
    ("form b'transaction_id=form\\xe8'", "duplicate"), ("form b'transaction_id=form%E9%E9'", "recorded"),
    # a \udcXX escape in JSON stands for the byte XX (Python's surrogateescape), as a raw byte does
    ("json b'json\\xe9'", "recorded"), ("json b'json\\xe8'", "recorded"), ("json b'json\\\\udcff'", "recorded"),
    ("json b'json\\\\udce9'", "duplicate"), ("json b'json\\xe8'", "duplicate"),
]


def test_ids_differing_only_in_invalid_utf8_bytes_are_distinct_conversions(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir)
    cid = h.link_click("alpha-1")
    assert send_ids(h, cid) == EXPECTED
    records = [r for r in h.log.all() if r["kind"] == "postback"]
    txns = [r["fields"]["transaction_id"] for r in records]
    assert txns[:7] == ["caf\\xe9", "caf\\xe8", "caf\\xff", "caf\\xe9", "caf\ufffd", "caf\\\\xe9", "café"]
    assert [unescape_bytes(t) for t in txns[:3]] == [b"caf\xe9", b"caf\xe8", b"caf\xff"]  # the bytes sent
    assert txns[7:] == ["form\\xe9", "form\\xe8", "form\\xe8", "form\\xe9\\xe9",
                        "json\\xe9", "json\\xe8", "json\\xff", "json\\xe9", "json\\xe8"]
    h.close()

    # after a restart, the index (rebuilt from the log) answers the same
    again = make_harness(data_dir)
    for txn in ("caf%E9", "caf%E8", "caf%FF", "caf%EF%BF%BD", "caf%5Cxe9"):
        assert answer(again, query=f"api_key=key-alpha&click_id={cid}&transaction_id={txn}") == "duplicate"
    assert answer(again, query=f"api_key=key-alpha&click_id={cid}&transaction_id=caf%FE") == "recorded"
    again.close()

    # staging reads the log with DuckDB (the fast path) and record by record (the reference): the same ids
    fast = staging.stage_log(data_dir / "log").events
    slow = pl.concat([staging.stage_segment_python(path, lambda bad: None)
                      for path in staging.segment_paths(data_dir / "log")]).sort("seq")
    assert fast["transaction_id"].to_list() == slow["transaction_id"].to_list()
    assert set(fast["transaction_id"].drop_nulls()) >= {"caf\\xe9", "caf\\xe8", "caf\\xff", "json\\xff"}

    pipeline.run(data_dir)
    conversions = pipeline.load(data_dir).conversions.filter(pl.col("click_id") == cid)
    recorded = sum(result == "recorded" for _, result in EXPECTED) + 1
    assert conversions.height == recorded == 13
    assert conversions["transaction_id"].n_unique() == recorded
    assert conversions.filter(pl.col("transaction_id").str.starts_with("caf"))["duplicates"].sum() == 6


def test_click_ids_keep_their_bytes_too(make_harness, data_dir: Path) -> None:
    h = make_harness(data_dir)
    for click_id in ("zz%E9", "zz%E8"):
        resp = h.raw("GET", "/api/postback", query_string=f"api_key=key-alpha&click_id={click_id}")
        assert resp.json["error"] == "click_not_found"
    assert [r["fields"]["click_id"] for r in h.log.all()] == ["zz\\xe9", "zz\\xe8"]


def test_exact_text_keeps_valid_text_and_escapes_only_what_would_collide() -> None:
    assert exact_text("café") == "café" and exact_text("a\\b") == "a\\b" and exact_text("\ufffd") == "\ufffd"
    assert exact_text("caf\udce9") == "caf\\xe9"  # an undecodable byte, as surrogateescape holds it
    assert exact_text("caf\\xe9") == "caf\\\\xe9"  # typed text that reads like an escape: its backslash doubled
    assert exact_text("a\ud800") == "a\\xed\\xa0\\x80"  # a lone surrogate from a JSON escape: its bytes
    assert parse_query("a=%E9&%FF=b&c=%5Cx") == [("a", "\\xe9"), ("\\xff", "b"), ("c", "\\\\x")]
    assert json.dumps(parse_query("t=x%E9"))  # always text JSON can hold
