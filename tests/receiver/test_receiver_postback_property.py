"""Issue 12: whatever order, repeats, encoding and body type a postback comes in, it is one log
record, and its values are kept exactly (hypothesis, through the Falcon app).

Each example sends a peerclick postback (`cid`, `txid`, `payout`, seed 002) with extra
parameters in random order, some repeated, as a query string, a form, JSON, text/plain
holding a query string or JSON, or multipart/form-data, the bodies plain or gzipped. The
record must be exactly one, answered 200, keep the raw request as sent, take the first value
of a repeated name, keep the transaction id and the amount text exactly as sent (a big JSON
integer too), and hold every other value, and every value of a repeated name, in custom_data.
"""

from __future__ import annotations

import base64
import gzip
from typing import Any
from urllib.parse import urlencode

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.contract.params import BASE_VOCABULARY
from tests.support.harness import Harness
from tests.support.postbacks import multipart

CARRIERS = ("query", "form", "json", "text", "text_json", "multipart")
REPEATING = ("query", "form", "text", "multipart")  # a JSON object cannot repeat a name
RECOGNISED = {alias for aliases in BASE_VOCABULARY.values() for alias in aliases} | {"campaign_id"}

# Values as partners send them: any printable text but control characters and surrounding
# spaces (recognised values are read stripped), accents, symbols and macro-like text included.
value_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=24).map(
    str.strip).filter(bool)
extra_name = st.from_regex(r"x_[a-z0-9_]{1,10}", fullmatch=True).filter(lambda n: n not in RECOGNISED)
amount_text = st.from_regex(r"(0|[1-9][0-9]{0,10})(\.[0-9]{1,8})?", fullmatch=True)


@st.composite
def postbacks(draw: st.DrawFn) -> dict[str, Any]:
    carrier = draw(st.sampled_from(CARRIERS))
    repeats = carrier in REPEATING
    extras = draw(st.dictionaries(extra_name, st.lists(value_text, min_size=1, max_size=3 if repeats else 1),
                                  max_size=4))
    big_json_id = carrier == "json" and draw(st.booleans())
    txids = [draw(st.integers(2**64, 2**80)) if big_json_id else draw(value_text)]
    if repeats and draw(st.booleans()):
        txids.append(draw(value_text))  # a second transaction id: the first one sent is used
    pairs = [("txid", t) for t in txids] + [("payout", draw(amount_text))]
    pairs += [(name, value) for name, values in extras.items() for value in values]
    order = draw(st.permutations(range(len(pairs))))
    return {"carrier": carrier, "pairs": [pairs[i] for i in order], "gzip": carrier != "query" and draw(st.booleans())}


def encode(carrier: str, pairs: list[tuple[str, Any]]) -> tuple[bytes, str]:
    """(body, Content-Type) of `pairs` carried so."""
    if carrier in ("json", "text_json"):
        # a big integer goes as a JSON number literal; every other value as a JSON string
        body = "{" + ", ".join(f"{orjson.dumps(k).decode()}: {v if isinstance(v, int) else orjson.dumps(v).decode()}"
                               for k, v in pairs) + "}"
        return body.encode(), "application/json" if carrier == "json" else "text/plain; charset=utf-8"
    if carrier == "multipart":
        return multipart([(k, str(v)) for k, v in pairs])
    return urlencode(pairs).encode(), ("application/x-www-form-urlencoded" if carrier == "form"
                                       else "text/plain; charset=utf-8")


def expected_custom(cid_pair: tuple[str, str], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """custom_data as the contract says: every unrecognised name, and a repeated name (recognised
    or not) with the list of its values in order."""
    values: dict[str, list[Any]] = {}
    for name, value in [cid_pair, *pairs]:
        values.setdefault(name, []).append(value)
    custom = {name: vals[0] for name, vals in values.items() if name not in RECOGNISED}
    custom.update({name: vals for name, vals in values.items() if len(vals) > 1})
    return custom


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sent=postbacks())
def test_any_order_repeat_encoding_and_body_is_one_record_with_exact_values(harness: Harness,
                                                                           sent: dict[str, Any]) -> None:
    click = harness.link_click("open-1")
    carrier, pairs = sent["carrier"], sent["pairs"]
    cid_pair = ("cid", click)
    headers: dict[str, str] = {}
    if carrier == "query":
        query = urlencode([cid_pair, *pairs])
        ex = harness.get("/postback", query_string=query)  # asserts exactly one new log record
        assert ex.record["query"] == query and ex.record["body"] == ""
    else:
        body, content_type = encode(carrier, pairs)
        raw = gzip.compress(body) if sent["gzip"] else body
        if sent["gzip"]:
            headers["Content-Encoding"] = "gzip"
        ex = harness.post("/postback", query_string=urlencode([cid_pair]), body=raw,
                          headers={"Content-Type": content_type, **headers})
        kept = (base64.b64decode(ex.record["body"]) if ex.record["body_encoding"] == "base64"
                else ex.record["body"].encode())
        assert kept == raw and ex.record["body_bytes"] == len(raw)  # the raw body as received
    assert ex.status == 200 and ex.record["result"] in ("recorded", "duplicate"), ex.record
    first = dict(reversed(pairs))  # the first value of each name wins
    assert ex.fields["transaction_id"] == str(first["txid"])  # exactly as sent, a big JSON integer too
    assert ex.fields["amount"] == first["payout"]
    assert ex.fields["click_id"] == click and ex.fields["dialect"] == "peerclick"
    assert ex.record["custom_data"] == expected_custom(cid_pair, pairs)
    if sent["gzip"]:
        assert ex.fields["content_encoding"] == "gzip"
