"""One postback, every way a client can send it (issue 12): random parameter order, repeated
names, and the carrier (query string, form, JSON, text/plain holding a query string or JSON,
multipart/form-data, each body optionally gzip- or deflate-compressed). Whatever the way,
the request is exactly one log record, and the record holds exactly what was sent: the
first value of each recognised parameter in its field, every other parameter (and every
repeated one, as the list of its values) in custom_data, JSON numbers with their digits.

Seed 002's dialect (`/postback`: cid, txid, payout) over the test network's open partner.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.contract.framing import segment_paths
from receiver.contract.params import BASE_VOCABULARY
from tests.support.harness import Harness

RECOGNISED = {alias for aliases in BASE_VOCABULARY.values() for alias in aliases}
CARRIERS = ("query", "form", "json", "text-query", "text-json", "multipart")
COMPRESSIONS = {"gzip": gzip.compress, "deflate": zlib.compress}

names = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8).filter(
    lambda name: name not in RECOGNISED)
values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
amounts = st.from_regex(r"(0|[1-9][0-9]{0,8})(\.[0-9]{1,8})?", fullmatch=True)
# JSON number literals orjson reads as floats (or beyond 64 bits): kept as the text sent
json_numbers = st.from_regex(r"-?(0|[1-9][0-9]{0,25})\.[0-9]{1,25}", fullmatch=True) | st.from_regex(
    r"[1-9][0-9]{20,30}", fullmatch=True)


@st.composite
def postbacks(draw: st.DrawFn) -> dict[str, Any]:
    carrier = draw(st.sampled_from(CARRIERS))
    extras = draw(st.dictionaries(names, values, max_size=5))
    repeatable = carrier not in ("json", "text-json")  # a JSON object cannot repeat a name
    repeated = draw(st.dictionaries(names, st.lists(values, min_size=2, max_size=3), max_size=2)) \
        if repeatable else {}
    extras = {k: v for k, v in extras.items() if k not in repeated}
    numbers = draw(st.dictionaries(names, json_numbers, max_size=2)) if carrier in ("json", "text-json") else {}
    extras = {k: v for k, v in extras.items() if k not in numbers}
    repeated = {k: v for k, v in repeated.items() if k not in numbers}
    return {
        "carrier": carrier,
        "compression": draw(st.sampled_from([None, *COMPRESSIONS])) if carrier != "query" else None,
        "txid": draw(st.text("ABCXYZ0123456789-", min_size=1, max_size=10)),
        "txid_again": draw(st.none() | st.text("ABC", min_size=1, max_size=3)) if repeatable else None,
        "amount": draw(amounts),
        "amount_as_number": draw(st.booleans()),
        "extras": extras,
        "repeated": repeated,
        "numbers": numbers,
        "seed": draw(st.randoms(use_true_random=False)),
    }


def pairs_of(case: dict[str, Any], cid: str, n: int) -> list[tuple[str, str]]:
    """(name, value) pairs in a random order; each repeated name's values keep their order."""
    txid = f"{case['txid']}-{n}"  # unique per example: every one is a new conversion
    pairs = [("cid", cid), ("txid", txid), ("payout", case["amount"]), *case["extras"].items()]
    if case["txid_again"] is not None:
        pairs.append(("txid", case["txid_again"]))
    for name, values_ in case["repeated"].items():
        pairs += [(name, value) for value in values_]
    case["seed"].shuffle(pairs)
    # a shuffle must not swap a repeated name's values, nor put the second txid first
    order: dict[str, list[str]] = {"txid": [txid] + ([case["txid_again"]] if case["txid_again"] else [])}
    order.update({name: list(v) for name, v in case["repeated"].items()})
    return [(name, order[name].pop(0)) if name in order else (name, value) for name, value in pairs]


def json_body(pairs: list[tuple[str, str]], case: dict[str, Any]) -> bytes:
    members = []
    for name, value in pairs:
        literal = case["amount"] if name == "payout" and case["amount_as_number"] else orjson.dumps(value).decode()
        members.append(f"{orjson.dumps(name).decode()}: {literal}")
    members += [f'"{name}": {number}' for name, number in case["numbers"].items()]
    return ("{" + ", ".join(members) + "}").encode()


def multipart_body(pairs: list[tuple[str, str]]) -> tuple[bytes, str]:
    boundary = "prop-b0undary-7f3a"
    out = b""
    for name, value in pairs:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def send(harness: Harness, case: dict[str, Any], pairs: list[tuple[str, str]]):
    carrier = case["carrier"]
    if carrier == "query":
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
        return harness.get("/postback", query_string=query)
    if carrier in ("form", "text-query"):
        body = urlencode(pairs).encode()
        content_type = "application/x-www-form-urlencoded" if carrier == "form" else "text/plain"
    elif carrier in ("json", "text-json"):
        body = json_body(pairs, case)
        content_type = "application/json" if carrier == "json" else "text/plain; charset=utf-8"
    else:
        body, content_type = multipart_body(pairs)
    headers = {"Content-Type": content_type}
    if case["compression"]:
        body = COMPRESSIONS[case["compression"]](body)
        headers["Content-Encoding"] = case["compression"]
    return harness.post("/postback", body=body, headers=headers)


@pytest.fixture
def open_click(harness: Harness) -> tuple[Harness, str]:
    return harness, harness.link_click("open-1")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(case=postbacks())
def test_every_way_of_sending_is_one_record_with_exact_values(open_click, case: dict[str, Any]) -> None:
    harness, cid = open_click
    n = len(harness.log.all())
    pairs = pairs_of(case, cid, n)
    ex = send(harness, case, pairs)  # harness.request asserts exactly one new record, agreeing with the answer
    assert ex.json == {"ok": True, "result": "recorded"}, (ex.json, case)
    fields = ex.fields
    assert (fields["click_id"], fields["transaction_id"], fields["amount"]) == (cid, f"{case['txid']}-{n}",
                                                                                case["amount"])
    expected: dict[str, Any] = dict(case["extras"])
    expected.update({name: list(v) for name, v in case["repeated"].items()})
    if case["txid_again"] is not None:
        expected["txid"] = [f"{case['txid']}-{n}", case["txid_again"]]
    custom = dict(ex.custom_data)
    for name, literal in case["numbers"].items():  # read back through orjson: compare the raw line
        custom.pop(name)
        line = segment_paths(harness.log.log_dir)[-1].read_bytes().splitlines()[-1]
        assert f'"{name}":{literal}'.encode() in line
    assert custom == expected
    assert ex.record["fields"].get("content_encoding") == case["compression"]
