"""Hypothesis fuzzing of the parameter parser, the redirect builder and whole requests.

The parsers may only refuse with ParamError or Refusal (which the app turns into a logged
4xx), never crash; what they return must be loggable (orjson-encodable); a redirect must
never leave the configured URL's scheme and host; and any request, however odd, leaves
exactly one log record and no 5xx.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from receiver.clicks import (
    _STAND_INS,
    append_query,
    build_link_url,
    earn_click,
    is_under,
    link_click,
    link_redirect_url,
)
from receiver.contract.codes import HTTP_STATUS
from receiver.contract.config import Config, Link, Offer, Partner, Product, RevenueShare
from receiver.contract.params import (
    ADVERTISER_VOCABULARY,
    BASE_VOCABULARY,
    STATUS_MAP,
    ParamError,
    merge_params,
    normalise_status,
    parse_body,
    parse_query,
    split_params,
)
from receiver.errors import Refusal
from receiver.params import parse_amount, parse_currency
from tests.support.harness import Harness
from tests.support.ids import uuid_like
from tests.support.network import AUTH_CONFIG

FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
CLICK_ID = uuid_like(1)  # the first click a fresh harness makes

ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
any_text = st.text(max_size=40)
# orjson (which parses every body) reads integers beyond 64 bits as floats: params never hold them.
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=10,
)
param_names = (
    st.sampled_from(sorted({a for v in ADVERTISER_VOCABULARY.values() for a in v})) | any_text
)
params_dicts = st.dictionaries(param_names, json_values, max_size=8)
content_types = (
    st.sampled_from(
        [
            None,
            "",
            "application/json",
            "application/json; charset=utf-8",
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/x+json",
            "multipart/form-data; boundary=x",
        ]
    )
    | ascii_text
)
# stdlib json also writes what orjson refuses to read (NaN, 2**70): hostile bodies too.
json_bodies = st.recursive(
    json_scalars | st.integers(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=10,
)
bodies = (
    st.binary(max_size=200)
    | json_bodies.map(lambda v: json.dumps(v).encode())
    | any_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
)


def encodable(value: Any) -> None:
    """Fails the example if the log writer could not encode `value`."""
    orjson.dumps(value)


# ---------------------------------------------------------------- receiver.params


@FUZZ
@given(
    query=any_text
    | st.lists(st.tuples(any_text, any_text)).map(
        lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    )
)
def test_parse_query_never_raises(query: str) -> None:
    wsgi = query.encode("utf-8", "surrogatepass").decode("latin-1")
    pairs = parse_query(wsgi)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)
    encodable(pairs)


@FUZZ
@given(body=bodies, content_type=content_types)
def test_parse_body_returns_loggable_params_or_param_error(
    body: bytes, content_type: str | None
) -> None:
    try:
        params = parse_body(body, content_type)
    except ParamError as exc:
        assert exc.code in HTTP_STATUS
        return
    assert isinstance(params, dict)
    encodable(params)


@FUZZ
@given(
    pairs=st.lists(st.tuples(param_names, any_text), max_size=8),
    body=params_dicts,
    advertiser=st.booleans(),
)
def test_merge_and_split_params_keep_everything_loggable(
    pairs: list[tuple[str, str]], body: dict[str, Any], advertiser: bool
) -> None:
    merged = merge_params(pairs, body)
    for name, value in pairs:  # the query wins
        assert name in merged
        if name not in dict(pairs[: pairs.index((name, value))]):
            assert merged[name] == value
    vocabulary = ADVERTISER_VOCABULARY if advertiser else BASE_VOCABULARY
    fields, custom = split_params(merged, vocabulary)
    assert set(fields) == set(vocabulary)
    assert all(value is None or isinstance(value, str) for value in fields.values())
    assert set(merged) == set(custom) | {a for v in vocabulary.values() for a in v if a in merged}
    encodable(fields)
    encodable(custom)
    normalise_status(fields["status"])


@FUZZ
@given(
    raw=json_values
    | st.decimals(allow_nan=True)
    | st.from_regex(r"-?[0-9]{0,14}(\.[0-9]{0,10})?([eE]-?[0-9]{1,3})?")
)
def test_parse_amount_is_exact_and_bounded_or_refused(raw: Any) -> None:
    try:
        text = parse_amount(raw, "invalid_amount", "amount")
    except ParamError as exc:
        assert exc.code == "invalid_amount"
        return
    number = Decimal(text)
    assert 0 <= number < Decimal("1e12")
    assert "e" not in text.lower() and -(number.as_tuple().exponent) <= 8  # type: ignore[operator]
    encodable(text)


@FUZZ
@given(raw=json_values)
def test_parse_currency_is_three_letters_or_refused(raw: Any) -> None:
    try:
        code = parse_currency(raw)
    except ParamError as exc:
        assert exc.code == "invalid_currency"
        return
    assert len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


@FUZZ
@given(raw=st.none() | any_text | st.sampled_from(sorted(STATUS_MAP)))
def test_normalise_status_is_always_a_known_status(raw: str | None) -> None:
    assert normalise_status(raw) in {"approved", "pending", "rejected", "test"}


# ---------------------------------------------------------------- receiver.clicks

hosts = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){1,2}(:[0-9]{2,5})?", fullmatch=True
)
path_segments = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#/\\"), max_size=8
)
paths = st.lists(path_segments, max_size=3).map(lambda parts: "/" + "/".join(parts))
queries = st.lists(st.tuples(ascii_text, ascii_text), max_size=3).map(
    lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
)


@st.composite
def configured_urls(draw: st.DrawFn) -> str:
    """An offer or task URL as config.toml would accept it: absolute http(s), no spaces."""
    url = f"{draw(st.sampled_from(['http', 'https']))}://{draw(hosts)}{draw(paths)}"
    if query := draw(queries):
        url += "?" + query
    if draw(st.booleans()):
        url += "#" + draw(path_segments)
    return url.replace("{", "").replace("}", "") + draw(
        st.sampled_from(["", "{click_id}", "&x={clickid}"])
    )


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@FUZZ
@given(
    url=configured_urls(),
    params=st.lists(st.tuples(any_text, any_text), max_size=4),
    replace=st.booleans(),
)
def test_append_query_never_changes_scheme_or_host(
    url: str, params: list[tuple[str, str]], replace: bool
) -> None:
    out = append_query(url, params, replace=replace)
    assert (
        out.startswith(origin(url) + "/")
        or out == origin(url)
        or out.startswith(origin(url) + "?")
        or out.startswith(origin(url) + "#")
    )
    assert urlsplit(out).netloc == urlsplit(url).netloc


def one_offer_config(offer_url: str, task_url: str) -> Config:
    partner = Partner("p", None, "none")
    offer = Offer("o", "p", "active", offer_url, "USD", RevenueShare(percent=Decimal(50)), 24.0)
    return Config(
        partners={"p": partner},
        offers={"o": offer},
        links={"s": Link("s", "o", "a")},
        products={"pr": Product("pr", "o", task_url)},
        public_url="https://rx.example",
    )


@FUZZ
@given(offer_url=configured_urls(), slug=st.sampled_from(["s"]) | any_text)
def test_link_click_redirects_only_to_the_offer_origin(offer_url: str, slug: str) -> None:
    config = one_offer_config(offer_url, "https://t.example/task")
    try:
        made = link_click(config, slug, CLICK_ID, NOW)
    except Refusal as exc:
        assert exc.code == "link_not_found"
        encodable(exc.fields)
        return
    assert made is not None
    assert made.redirect_url.startswith(origin(offer_url))
    assert urlsplit(made.redirect_url).netloc == urlsplit(offer_url).netloc
    encodable(made.fields)


@FUZZ
@given(task_url=configured_urls(), data=st.data())
def test_earn_click_redirects_only_under_the_task_url(task_url: str, data: st.DataObject) -> None:
    assume("{" not in task_url)
    # Mostly near misses of the task URL itself: a suffix, a different case, a prefix.
    candidate = data.draw(
        st.none()
        | configured_urls()
        | json_values
        | any_text.map(lambda suffix: task_url + suffix)
        | st.integers(1, len(task_url)).map(lambda n: task_url[:n])
        | st.just(task_url.upper())
    )
    config = one_offer_config("https://o.example/", task_url)
    product = config.products["pr"]
    try:
        made = earn_click(config, product, "u1", candidate, CLICK_ID, NOW)
    except Refusal as exc:
        assert exc.code == "invalid_task_url"
        return
    # Scheme and host compare case-insensitively (HTTP://Host is http://host); nothing else may differ.
    assert made.redirect_url.lower().startswith(origin(task_url).lower())
    assert urlsplit(made.redirect_url).netloc.lower() == urlsplit(task_url).netloc.lower()
    assert is_under(made.fields["task_url"], task_url)
    encodable(made.fields)


@FUZZ
@given(candidate=any_text | configured_urls(), base=configured_urls())
def test_is_under_never_raises_and_keeps_the_origin(candidate: str, base: str) -> None:
    if is_under(candidate, base):
        assert origin(candidate).lower() == origin(base).lower()


# ---------------------------------------------------------------- whole requests


ROUTES = [
    "/api/postback",
    "/postback",
    "/postback/advertiser",
    "/postback/key-alpha",
    "/postback/key-signer",
    "/postback/key-fenced",
    "/postback/{x}",
    "/api/v1/earn/postback",
    "/t/alpha-1",
    "/t/{x}",
    "/api/v1/earn/products/p1/click",
    "/api/v1/earn/products/{x}/click",
    "/api/v1/earn/track/{x}",
    "/healthz",
    "/openapi.json",
    "/{x}",
]
segment = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"), max_size=12
)


@st.composite
def requests_(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from(ROUTES)).replace("{x}", draw(segment))
    pairs = draw(
        st.lists(
            st.tuples(param_names | ascii_text, st.just(CLICK_ID) | ascii_text | any_text),
            max_size=6,
        )
    )
    headers = {
        name: draw(ascii_text)
        for name in draw(
            st.sets(
                st.sampled_from(
                    ["X-API-Key", "X-Signature", "X-Timestamp", "X-Forwarded-For", "Authorization"]
                )
            )
        )
    }
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])),
        "path": path,
        "query_string": "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs),
        "body": draw(bodies),
        "content_type": draw(content_types),
        "headers": headers,
        "remote_addr": draw(
            st.sampled_from(["127.0.0.1", "203.0.113.5", "2001:db8::1", "10.0.0.1"])
        ),
    }


@pytest.fixture
def clicked(make_harness, tmp_path: Path) -> Harness:
    """The auth test network (allowlists, signers) with one known click of the signing partner,
    so some fuzzed postbacks reach a click and every authentication branch is exercised."""
    data = tmp_path / "fuzz"
    data.mkdir()
    (data / "config.toml").write_text(AUTH_CONFIG, encoding="utf-8")
    harness = make_harness(data)
    assert harness.link_click("signer-1") == CLICK_ID
    return harness


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(request=requests_())
def test_every_request_leaves_exactly_one_record_and_no_server_error(
    clicked: Harness, request: dict[str, Any]
) -> None:
    kwargs = dict(request)
    method, path, content_type = (
        kwargs.pop("method"),
        kwargs.pop("path"),
        kwargs.pop("content_type"),
    )
    if content_type:
        kwargs["headers"] = {**kwargs["headers"], "Content-Type": content_type}
    resp = clicked.raw(method, path, **kwargs)
    record = clicked.log.one_new()
    assert resp.status_code < 500, (resp.status_code, resp.text)
    assert record["http_status"] == resp.status_code and record["method"] == method
    if resp.status_code >= 400 and method != "HEAD":
        assert resp.json["error"] == record["error"] and record["error"] in HTTP_STATUS


# -- fast paths of the request path must give exactly what the general code gives


@given(st.text(alphabet="abz09=&;._-~%+é", max_size=40))
@settings(max_examples=400)
def test_parse_query_fast_path_equals_parse_qsl(query: str) -> None:
    from urllib.parse import parse_qsl

    # issue 15: bytes that are not UTF-8 keep their identity (exact_text), no longer U+FFFD
    from receiver.contract.params import exact_text

    raw = query.encode("latin-1", "replace").decode("utf-8", "surrogateescape")
    assert parse_query(query) == [(exact_text(name), exact_text(value)) for name, value in
                                  parse_qsl(raw, keep_blank_values=True, errors="surrogateescape")]


def _amount_outcome(raw: str) -> tuple[str, str]:
    try:
        return ("ok", parse_amount(raw, "invalid_amount", "amount"))
    except ParamError as exc:
        return ("refused", str(exc))


@given(st.from_regex(r"\A[0-9]{0,14}(\.[0-9]{0,10})?\Z") | st.text("0123456789.-+e ", max_size=16))
@settings(max_examples=400)
def test_parse_amount_fast_path_equals_decimal_formatting(raw: str) -> None:
    fast = _amount_outcome(raw)
    try:
        number = Decimal(raw.strip())
    except ArithmeticError:
        assert fast[0] == "refused"
        return
    if fast[0] == "ok":
        assert fast[1] == format(number, "f") and Decimal(fast[1]) == number


@st.composite
def macro_urls(draw: st.DrawFn) -> str:
    """A configured URL with click id macros anywhere: host, path, query names and values."""
    url = draw(configured_urls())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(st.sampled_from(["{click_id}", "{clickid}", "click_id=", "&", "=", "?", "#"])) + url[at:]
    return url


@FUZZ
@given(url=configured_urls() | macro_urls() | any_text, offer=st.sampled_from(["o", "click_id"]) | any_text,
       affiliate=st.sampled_from(["a", "offer_id"]) | any_text, click=st.uuids(), stand_in=st.booleans())
def test_link_redirect_template_equals_the_general_builder(url: str, offer: str, affiliate: str, click: Any,
                                                           stand_in: bool) -> None:
    click_id = _STAND_INS[1] if stand_in else str(click)
    try:
        expected: Any = build_link_url(url, offer, affiliate, click_id)
    except ValueError as exc:  # urlsplit refuses some texts: the fast path must refuse them alike
        expected = type(exc)
    for _ in range(2):  # the first call builds the template, the second uses it
        try:
            got: Any = link_redirect_url(url, offer, affiliate, click_id)
        except ValueError as exc:
            got = type(exc)
        assert got == expected


def test_link_redirect_template_is_not_used_when_a_stand_in_is_in_the_url() -> None:
    url = f"https://shop.example/land?ref={_STAND_INS[0]}&c={{click_id}}"
    click_id = "2b0d4c1e-1a2b-4c3d-8e9f-0123456789ab"
    assert link_redirect_url(url, "o", "a", click_id) == build_link_url(url, "o", "a", click_id)
    assert _STAND_INS[0] in link_redirect_url(url, "o", "a", click_id)


def test_random_uuids_are_version_4_and_distinct_across_threads() -> None:
    import threading
    import uuid

    from receiver.app import RandomUUIDs

    source, out = RandomUUIDs(), []

    def draw() -> None:
        out.extend(source() for _ in range(2000))  # many pool refills while others draw

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(out) == 16000
    for text in out[:500]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
