"""The log record's one definition (receiver.contract.record) against everything that uses it:
the records the receiver writes, the pipeline's staging and story, docs/log-format.md."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import partial
from typing import Any

import orjson
import polars as pl
import pytest

from pipeline import staging, story
from pipeline.money import MONEY
from pipeline.secrets import mask_headers, mask_json, mask_secrets
from receiver.contract import record
from receiver.contract.framing import iter_log
from receiver.contract.record_doc import BLOCKS, render_doc, render_table
from receiver.contract.timeutil import parse_utc
from tests.support.paths import REPO
from tests.support.traffic import send_every_kind, send_every_way_of_sending

DECIMAL_RE = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,8})?")
UTC_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


@pytest.fixture
def every_kind(harness: Any) -> list[dict[str, Any]]:
    """The records of traffic that makes every kind of record, accepted and refused."""
    sent = {**send_every_kind(harness), **send_every_way_of_sending(harness)}
    records = list(iter_log(harness.data_dir / "log"))
    assert len(records) == len(sent)
    return records


def has_type(value: Any, kind: str) -> bool:
    if kind == record.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == record.BOOL:
        return isinstance(value, bool)
    if kind == record.OBJECT:
        return isinstance(value, dict)
    if not isinstance(value, str):
        return False
    if kind == record.DECIMAL:
        return DECIMAL_RE.fullmatch(value) is not None
    if kind == record.UTC_TIME:
        return UTC_TIME_RE.fullmatch(value) is not None
    return kind == record.TEXT


def accepts(definition: record.Definition, value: Any) -> bool:
    return (value is None and definition.nullable) or has_type(value, definition.type)


# ---------------------------------------------------------------- what the receiver writes


def test_every_record_holds_exactly_the_contracts_members_in_order(every_kind: list[dict[str, Any]]) -> None:
    for rec in every_kind:
        assert list(rec) == list(record.MEMBERS.names), rec


def test_every_member_has_the_contracts_type(every_kind: list[dict[str, Any]]) -> None:
    for rec in every_kind:
        for definition in record.MEMBERS:
            assert accepts(definition, rec[definition.name]), (definition, rec)
        assert rec["kind"] in record.KINDS
        assert rec["result"] is None or rec["result"] in record.RESULTS


def test_fields_hold_only_keys_the_contract_defines_for_their_kind(every_kind: list[dict[str, Any]]) -> None:
    for rec in every_kind:
        assert set(rec["fields"]) <= record.allowed_fields(rec["kind"]), rec


def test_complete_fields_are_exactly_their_kinds_in_contract_order(every_kind: list[dict[str, Any]]) -> None:
    complete = {"click": 0, "postback": 0, "track": 0}
    for rec in every_kind:
        keys = list(rec["fields"])
        if rec["kind"] == "click" and rec["result"] == "click":
            origin = "slug" if rec["fields"]["source"] == "link" else "task_url"
            assert keys == [*record.CLICK_FIELDS.always, origin]
        elif rec["kind"] == "postback" and rec["fields"].get("dialect") == "profile" and rec["fields"].get("status"):
            # a profile's postback: every key, then the `only` keys it holds, in contract order
            assert keys == [name for name in record.POSTBACK_FIELDS.names
                            if name in record.POSTBACK_FIELDS.always or name in rec["fields"]]
        elif rec["kind"] == "postback" and rec["http_status"] != 405 and rec["error"] != "invalid_body":
            assert keys == list(record.POSTBACK_FIELDS.always)
        elif rec["kind"] == "track" and rec["result"] == "tracked":
            assert keys == list(record.TRACK_FIELDS.always)
        else:
            continue
        complete[rec["kind"]] += 1
    assert all(complete.values()), complete


def test_every_field_has_the_contracts_type(every_kind: list[dict[str, Any]]) -> None:
    for rec in every_kind:
        shapes = [s for s in (record.FIELDS_BY_KIND.get(rec["kind"]), record.ANY_RECORD_FIELDS) if s is not None]
        for key, value in rec["fields"].items():
            definitions = [shape[key] for shape in shapes if key in shape]
            assert any(accepts(d, value) for d in definitions), (key, value, rec)


def test_the_contract_defines_nothing_the_receiver_never_writes(every_kind: list[dict[str, Any]]) -> None:
    written: dict[str, set[str]] = {}
    for rec in every_kind:
        written.setdefault(rec["kind"], set()).update(rec["fields"])
    assert set(written) == set(record.KINDS)
    for kind, shape in record.FIELDS_BY_KIND.items():
        assert set(shape.names) <= written[kind], kind
    # the encoding fallback is written only for values JSON cannot hold (see receiver.app.commit)
    assert set(record.ANY_RECORD_FIELDS.names) - {"unencodable"} <= written["unrouted"]


def test_builders_refuse_a_name_the_contract_does_not_define() -> None:
    with pytest.raises(TypeError, match="clik_id"):
        record.CLICK_FIELDS.new(clik_id="x")
    with pytest.raises(record.UnknownNameError, match="clik_id"):
        record.CLICK_FIELDS.partial(clik_id="x")
    with pytest.raises(TypeError, match="remote_address"):
        record.new_record(remote_address="x")
    # `only` keys come only when given; the others always, null unless given
    assert record.CLICK_FIELDS.new(click_id="c") == {**dict.fromkeys(record.CLICK_FIELDS.always), "click_id": "c"}
    assert list(record.CLICK_FIELDS.new(task_url="t"))[-1] == "task_url"
    assert record.new_record()["v"] == record.FORMAT_VERSION


def test_a_definition_needs_a_known_type_and_unique_names() -> None:
    with pytest.raises(ValueError, match="unknown type"):
        record.Definition("x", "integer", "a typo of int")
    with pytest.raises(ValueError, match="defined twice"):
        record.Shape("twice", (record.Definition("x", record.INT, ""), record.Definition("x", record.TEXT, "")))
    with pytest.raises(ValueError, match="keyword parameter"):
        record.Shape("bad name", (record.Definition("not-a-name", record.INT, ""),))
    with pytest.raises(ValueError, match="unknown record kind"):
        record.allowed_fields("clicks")


def test_a_fields_key_has_one_type_in_every_kind() -> None:
    kinds = record.all_fields()
    for shape in (*record.FIELDS_BY_KIND.values(), record.ANY_RECORD_FIELDS):
        for definition in shape:
            assert kinds[definition.name] == definition.type


# ---------------------------------------------------------------- staging and story


def expected_dtype(kind: str) -> pl.DataType:
    return {record.TEXT: pl.String(), record.INT: pl.Int64(), record.BOOL: pl.Boolean(),
            record.DECIMAL: MONEY, record.UTC_TIME: staging.UTC_TS}[kind]


def test_staging_schema_is_the_contracts_members_and_fields() -> None:
    members = record.members()
    assert set(staging.NOT_STAGED) <= set(members)
    staged_members = {n: k for n, k in members.items() if n not in staging.NOT_STAGED and k != record.OBJECT}
    expected = {
        **{n: expected_dtype(k) for n, k in staged_members.items()},
        "custom_data": pl.String(),
        **{n: expected_dtype(k) for n, k in record.all_fields().items()},
        "segment": pl.String(), "line_no": pl.Int64(), "amount_sent": pl.Boolean(),
    }
    assert dict(staging.STAGED_SCHEMA) == expected
    assert {"client_ip", "signature_present"} <= set(staging.STAGED_SCHEMA)


def test_staging_reads_every_contract_field_the_receiver_wrote(harness: Any,
                                                               every_kind: list[dict[str, Any]]) -> None:
    fast = staging.stage_log(harness.data_dir / "log").events
    slow = staging.stage_segment_python(*staging.segment_paths(harness.data_dir / "log"), lambda bad: None)
    assert fast.equals(slow.sort("seq"))
    by_seq = {row["seq"]: row for row in fast.iter_rows(named=True)}
    members, fields = record.members(), record.all_fields()
    # issue 15: the raw members that may carry an api key are staged with its fingerprint in its place
    masks = {"path": partial(mask_secrets, path_decoded=True), "query": mask_secrets, "referer": mask_secrets,
             "request_line": mask_secrets, "headers": mask_headers}
    for rec in every_kind:
        row = by_seq[rec["seq"]]
        for name, value in [*((n, rec[n]) for n in staging.RAW_SCHEMA if n in members),
                            *rec["fields"].items()]:
            kind = members.get(name) or fields[name]
            if name in masks and value is not None:
                value = masks[name](value)
            if name == "custom_data":
                assert orjson.loads(row[name]) == mask_json(value)
            elif value is None:
                assert row[name] is None, (name, rec)
            elif kind == record.DECIMAL:
                assert row[name] == Decimal(value), (name, rec)
            elif kind == record.UTC_TIME:
                assert row[name] == parse_utc(value), (name, rec)
            else:
                assert row[name] == value, (name, rec)


def test_story_reads_the_log_with_the_contracts_types() -> None:
    members = record.members()
    assert set(story.LOG_COLUMNS) <= set(members)
    for name, duckdb_type in story.LOG_COLUMNS.items():
        assert duckdb_type == staging.DUCKDB_TYPES[members[name]]
    assert story.LOG_COLUMNS["fields"] == "JSON" and story.LOG_COLUMNS["seq"] == "BIGINT"


# ---------------------------------------------------------------- docs/log-format.md


def test_log_format_doc_tables_are_the_contracts() -> None:
    path = REPO / "docs" / "log-format.md"
    text = path.read_text(encoding="utf-8")
    assert render_doc(text) == text, (
        "docs/log-format.md differs from receiver/contract/record.py: run "
        "`.venv/bin/python -m receiver.contract.record_doc docs/log-format.md` and review the diff")
    for name, (heading, shape) in BLOCKS.items():
        assert f"<!-- contract:{name} -->\n{render_table(heading, shape)}<!-- /contract:{name} -->" in text
        for definition in shape:
            assert f"| `{definition.name}` |" in text


def test_doc_check_catches_a_changed_or_missing_table() -> None:
    text = (REPO / "docs" / "log-format.md").read_text(encoding="utf-8")
    edited = text.replace("| `client_ip` |", "| `client_address` |")
    assert edited != text and render_doc(edited) != edited
    without = re.sub(r"<!-- contract:track-fields -->.*?<!-- /contract:track-fields -->", "", text, flags=re.S)
    with pytest.raises(ValueError, match="track-fields"):
        render_doc(without)
