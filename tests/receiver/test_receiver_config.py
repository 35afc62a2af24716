"""DATA/config.toml: parsing, defaults, refusals naming the line, and reload without restart."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from pathlib import Path

import pytest

from clickledger.demo import DEMO_CONFIG
from receiver.app import create_app
from receiver.config_store import ConfigStore
from receiver.contract.config import ConfigError
from receiver.contract.config_file import load_config, parse_config
from tests.support.live_server import start_live_server
from tests.support.network import HASHED_KEY, HASHED_KEY_SHA256, TEST_CONFIG, rewrite_config

BASE = """\
base_currency = "USD"
homepage = "https://home.example/"
public_url = "https://rx.example"

[[partners]]
id = "p1"
api_key = "k1"

[[partners]]
id = "p2"
api_key = "k2"

[[offers]]
id = "o1"
partner = "p1"
url = "https://o.example/land"

[[offers]]
id = "o2"
partner = "p2"
url = "https://o.example/two"

[[links]]
slug = "s1"
offer = "o1"
affiliate = "a1"

[[products]]
id = "pr1"
offer = "o1"
task_url = "https://t.example/task"

[[users]]
id = "u1"
token = "t1"
"""


def line_no(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based number of the line holding the n-th occurrence of `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} occurs {len(hits)} times"
    return hits[occurrence - 1]


def edit(text: str, old: str, new: str, occurrence: int = 1) -> str:
    """Replace the n-th occurrence of `old` (a whole line's content) with `new`."""
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if line == old]
    assert len(hits) >= occurrence, f"{old!r} occurs {len(hits)} times"
    lines[hits[occurrence - 1]] = new
    return "\n".join(lines) + "\n"


def refused(text: str, line: int, fragment: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    exc = info.value
    assert exc.line == line, str(exc)
    assert f"line {line}:" in str(exc)
    assert fragment in str(exc)
    return exc


# ---------------------------------------------------------------- parsing and defaults


def test_base_config_parses() -> None:
    config = parse_config(BASE)
    assert set(config.partners) == {"p1", "p2"}
    assert set(config.offers) == {"o1", "o2"}
    assert set(config.links) == {"s1"}
    assert set(config.products) == {"pr1"}
    assert set(config.users) == {"u1"}


def test_defaults() -> None:
    config = parse_config(TEST_CONFIG)
    assert config.base_currency == "USD"
    assert config.homepage == "https://home.example/"
    assert config.public_url == "https://rx.example"  # trailing slash dropped
    alpha, beta, public = config.partners["alpha"], config.partners["beta"], config.partners["open"]
    assert (alpha.postback_auth, alpha.status_updates) == ("key", False)  # defaults
    assert (beta.postback_auth, beta.status_updates) == ("key", True)
    assert public.postback_auth == "none" and public.api_key_sha256 is None
    shop, app = config.offers["alpha-shop"], config.offers["beta-app"]
    assert shop.currency == "EUR"  # stored uppercase
    assert shop.status == "active" and shop.click_ttl_hours == 2
    assert shop.revenue_share.percent == Decimal("70") and shop.revenue_share.fixed is None
    assert app.status == "active"  # default status
    assert app.currency == "USD"  # default currency
    assert app.click_ttl_hours is None  # link clicks never expire by default
    assert app.revenue_share.fixed == Decimal("1.5") and app.revenue_share.percent is None
    assert config.offers["open-offer"].revenue_share.percent == Decimal("100")  # default share
    assert config.offers["alpha-paused"].status == "paused"
    assert config.offers["alpha-pending"].status == "pending"
    assert config.products["p1"].click_ttl_hours == 1
    assert config.products["p2"].click_ttl_hours == 24  # default
    assert config.links["alpha-1"].offer == "alpha-shop" and config.links["alpha-1"].affiliate == "aff1"
    assert config.user_for_token("tok-1").id == "u1"
    assert config.user_for_token("tok-x") is None


def test_top_level_defaults_when_omitted() -> None:
    config = parse_config("")
    assert config.base_currency == "USD"
    assert config.homepage.startswith("https://")
    assert config.partners == {} and config.offers == {}


def test_base_currency_is_uppercased() -> None:
    assert parse_config(edit(BASE, 'base_currency = "USD"', 'base_currency = "eur"')).base_currency == "EUR"


def test_api_keys_match_only_their_partner() -> None:
    config = parse_config(TEST_CONFIG)
    assert config.partner_for_key("key-alpha").id == "alpha"
    assert config.partner_for_key("key-beta").id == "beta"
    assert config.partner_for_key("key-gamma") is None
    assert config.partner_for_key("") is None
    assert config.partner_for_key("KEY-ALPHA") is None


def test_api_key_sha256() -> None:
    config = parse_config(TEST_CONFIG)
    assert config.partner_for_key(HASHED_KEY).id == "hashed"
    assert config.partners["hashed"].api_key_sha256 == hashlib.sha256(HASHED_KEY.encode()).digest()
    assert config.partner_for_key(HASHED_KEY_SHA256) is None  # the digest itself is not a key
    upper = TEST_CONFIG.replace(HASHED_KEY_SHA256, HASHED_KEY_SHA256.upper())
    assert parse_config(upper).partner_for_key(HASHED_KEY).id == "hashed"


def test_demo_config_parses() -> None:
    config = parse_config(DEMO_CONFIG.format(public_url="http://127.0.0.1:9"))
    assert config.partner_for_key("sp_live_acme").id == "acme"
    assert config.partner_for_key("mlk_live_7f3a9c").id == "moustache"
    assert config.partners["peerclick"].postback_auth == "none"
    assert config.products["task-1"].task_url == "https://advertiser.example/offer"


def test_load_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "config.toml")
    path = tmp_path / "config.toml"
    path.write_text(edit(BASE, 'id = "u1"', 'id = "u1"\ncolour = "red"'), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "line 35:" in str(info.value)


# ---------------------------------------------------------------- refusals naming the line


@pytest.mark.parametrize("table_line, extra", [
    ('id = "p2"', "api_secret"),  # [[partners]]
    ('id = "o2"', "payout"),  # [[offers]], the second one
    ('slug = "s1"', "sub1"),  # [[links]]
    ('id = "pr1"', "ttl"),  # [[products]]
    ('id = "u1"', "email"),  # [[users]]
])
def test_unknown_key_in_a_table(table_line: str, extra: str) -> None:
    text = edit(BASE, table_line, f'{table_line}\n{extra} = "x"')
    refused(text, line_no(text, f"{extra} ="), f"unknown key {extra!r}")


def test_unknown_top_level_key() -> None:
    text = edit(BASE, 'homepage = "https://home.example/"', 'homepage = "https://home.example/"\ncolour = "red"')
    refused(text, 3, "unknown key 'colour'")


def test_unknown_dotted_key_in_a_table() -> None:
    text = edit(BASE, 'id = "p1"', 'id = "p1"\nextra.flag = true')
    refused(text, line_no(text, "extra.flag"), "unknown key 'extra'")


def test_unknown_key_in_an_inline_array_of_tables() -> None:
    text = 'base_currency = "USD"\n\npartners = [{ id = "p", api_key = "k", bogus = 1 }]\n'
    refused(text, 3, "unknown key 'bogus'")


def test_table_instead_of_array_of_tables() -> None:
    text = 'homepage = "https://home.example/"\n\n[partners]\nid = "p"\n'
    refused(text, 3, "partners must be an array of tables")
    text = '[[offers]]\nid = "o"\npartner = "p"\nurl = "https://o.example/"\n\n[partners]\nid = "p"\n'
    refused(text, 6, "partners must be an array of tables")


def test_offer_names_missing_partner() -> None:
    text = edit(BASE, 'partner = "p2"', 'partner = "ghost"')
    refused(text, line_no(text, 'partner = "ghost"'), "partner 'ghost', which is not defined")


def test_link_names_missing_offer() -> None:
    text = edit(BASE, 'offer = "o1"', 'offer = "ghost"', occurrence=1)
    refused(text, line_no(text, 'offer = "ghost"'), "offer 'ghost', which is not defined")


def test_product_names_missing_offer() -> None:
    text = edit(BASE, 'offer = "o1"', 'offer = "ghost"', occurrence=2)
    refused(text, 30, "product 'pr1' names offer 'ghost'")


@pytest.mark.parametrize("old, new, key_line, what", [
    ('id = "p2"', 'id = "p1"', 'id = "p1"', "duplicate partner id 'p1'"),
    ('id = "o2"', 'id = "o1"', 'id = "o1"', "duplicate offer id 'o1'"),
])
def test_duplicate_ids(old: str, new: str, key_line: str, what: str) -> None:
    text = edit(BASE, old, new)
    refused(text, line_no(text, key_line, occurrence=2), what)


def test_duplicate_link_slug_product_and_user() -> None:
    link = '\n[[links]]\nslug = "s1"\noffer = "o2"\naffiliate = "a2"\n'
    text = BASE + link
    refused(text, line_no(text, 'slug = "s1"', occurrence=2), "duplicate link slug 's1'")
    product = '\n[[products]]\nid = "pr1"\noffer = "o2"\ntask_url = "https://t.example/other"\n'
    text = BASE + product
    refused(text, line_no(text, 'id = "pr1"', occurrence=2), "duplicate product id 'pr1'")
    user = '\n[[users]]\nid = "u1"\ntoken = "t2"\n'
    text = BASE + user
    refused(text, line_no(text, 'id = "u1"', occurrence=2), "duplicate user id 'u1'")
    shared_token = '\n[[users]]\nid = "u2"\ntoken = "t1"\n'
    text = BASE + shared_token
    refused(text, line_no(text, 'token = "t1"', occurrence=2), "share this token")


@pytest.mark.parametrize("currency", ["EURO", "US", "12A", "", "€UR"])
def test_bad_offer_currency(currency: str) -> None:
    text = edit(BASE, 'url = "https://o.example/two"', f'url = "https://o.example/two"\ncurrency = "{currency}"')
    refused(text, line_no(text, f'currency = "{currency}"'), "currency must be a 3-letter code")


def test_bad_base_currency() -> None:
    text = edit(BASE, 'base_currency = "USD"', 'base_currency = "dollars"')
    refused(text, 1, "base_currency must be a 3-letter code")


@pytest.mark.parametrize("url", [
    "ftp://o.example/land",
    "o.example/land",
    "https://",
    "https://user@o.example/land",
    "https://o.example/a b",
    "https://o.example\\\\evil.example/",
    "javascript:alert(1)",
])
def test_bad_offer_url(url: str) -> None:
    text = edit(BASE, 'url = "https://o.example/two"', f'url = "{url}"')
    refused(text, line_no(text, f'url = "{url}"'), "url must be an absolute http(s) URL")


def test_bad_task_url_homepage_and_public_url() -> None:
    text = edit(BASE, 'task_url = "https://t.example/task"', 'task_url = "/task"')
    refused(text, line_no(text, "task_url ="), "task_url must be an absolute")
    text = edit(BASE, 'homepage = "https://home.example/"', 'homepage = "home"')
    refused(text, 2, "homepage must be an absolute")
    text = edit(BASE, 'public_url = "https://rx.example"', 'public_url = "rx.example"')
    refused(text, 3, "public_url must be an absolute")
    text = edit(BASE, 'url = "https://o.example/land"', "url = 42")
    refused(text, line_no(text, "url = 42"), "url must be an absolute")


@pytest.mark.parametrize("share, fragment", [
    ("{ percent = 120 }", "between 0 and 100"),
    ("{ percent = -1 }", ">= 0"),
    ('{ percent = "lots" }', "must be a number"),
    ("{ fixed = -0.5 }", ">= 0"),
    ("{ fixed = nan }", "finite"),
    ("{ percent = 50, fixed = 1 }", "revenue_share must be"),
    ("{ share = 50 }", "revenue_share must be"),
    ("{}", "revenue_share must be"),
    ("50", "revenue_share must be"),
])
def test_bad_revenue_share(share: str, fragment: str) -> None:
    text = edit(BASE, 'url = "https://o.example/two"', f'url = "https://o.example/two"\nrevenue_share = {share}')
    refused(text, line_no(text, "revenue_share ="), fragment)


def test_bad_revenue_share_as_dotted_key_or_sub_table() -> None:
    text = edit(BASE, 'url = "https://o.example/land"', 'url = "https://o.example/land"\nrevenue_share.percent = 101')
    refused(text, line_no(text, "revenue_share.percent"), "between 0 and 100")
    text = BASE.replace(
        '[[offers]]\nid = "o2"',
        '[offers.revenue_share]\npercent = 5\nbonus = 1\n\n[[offers]]\nid = "o2"',
    )
    refused(text, line_no(text, "[offers.revenue_share]"), "revenue_share must be")


@pytest.mark.parametrize("old, new, fragment", [
    ('url = "https://o.example/two"', 'url = "https://o.example/two"\nstatus = "live"', "status must be one of"),
    ('api_key = "k2"', 'api_key = "k2"\npostback_auth = "maybe"', "postback_auth must be one of"),
    ('api_key = "k2"', 'api_key = "k2"\nstatus_updates = "yes"', "status_updates must be true or false"),
    ('api_key = "k2"', 'api_key = "k2"\napi_key_sha256 = "' + "0" * 64 + '"', "not both"),
    ('api_key = "k2"', 'api_key_sha256 = "abc"', "64 hex digits"),
    ('api_key = "k2"', 'api_key_sha256 = "' + "z" * 64 + '"', "64 hex digits"),
    ('api_key = "k2"', 'api_key = ""', "api_key must be a non-empty string"),
    ('url = "https://o.example/two"', 'url = "https://o.example/two"\nclick_ttl_hours = 0', "click_ttl_hours must be a positive"),
    ('task_url = "https://t.example/task"', 'task_url = "https://t.example/task"\nclick_ttl_hours = "24"', "click_ttl_hours must be a positive"),
    ('slug = "s1"', 'slug = "s/1"', "slug may hold only"),
])
def test_bad_values_name_their_line(old: str, new: str, fragment: str) -> None:
    text = edit(BASE, old, new)
    refused(text, line_no(text, new.splitlines()[-1]), fragment)


def test_missing_required_key_names_the_entry() -> None:
    text = edit(BASE, 'url = "https://o.example/two"', "")
    refused(text, line_no(text, "[[offers]]", occurrence=2), "missing 'url'")


def test_key_partner_without_key_names_the_entry() -> None:
    text = edit(BASE, 'api_key = "k2"', "")
    refused(text, line_no(text, "[[partners]]", occurrence=2), 'needs api_key or api_key_sha256')


def test_public_partner_needs_no_key() -> None:
    text = edit(BASE, 'api_key = "k2"', 'postback_auth = "none"')
    assert parse_config(text).partners["p2"].postback_auth == "none"


def test_invalid_toml_names_the_line() -> None:
    text = edit(BASE, 'id = "o2"', 'id = "o2')
    refused(text, 19, "not valid TOML")


def test_app_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(edit(BASE, 'offer = "o1"', 'offer = "nope"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 25: link 's1' names offer 'nope'"):
        create_app(tmp_path)
    assert not (tmp_path / "log").exists() or not list((tmp_path / "log").glob("segment-*"))


@pytest.mark.server
def test_serve_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    bad = edit(BASE, 'id = "p2"', 'id = "p1"')

    def write(data: Path, url: str) -> None:
        (data / "config.toml").write_text(bad, encoding="utf-8")

    with pytest.raises(RuntimeError) as info:
        start_live_server(tmp_path / "data", write, attempts=1)
    assert re.search(r"line 10: duplicate partner id 'p1'", str(info.value)), str(info.value)


# ---------------------------------------------------------------- reload without restart


def test_config_store_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE, encoding="utf-8")
    store = ConfigStore(path)
    first = store.current()
    assert store.current() is first  # no change, no re-parse
    rewrite_config(path, BASE.replace('api_key = "k1"', 'api_key = "k1-rotated"'))
    second = store.current()
    assert second is not first
    assert second.partner_for_key("k1") is None
    assert second.partner_for_key("k1-rotated").id == "p1"


def test_rotated_api_key_stops_working_at_once(harness) -> None:
    click = harness.link_click("alpha-1")
    ok = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": click, "txn": "t1"})
    assert (ok.status, ok.json) == (200, {"ok": True, "result": "recorded"})
    harness.rewrite_config(TEST_CONFIG.replace('api_key = "key-alpha"', 'api_key = "key-alpha-2"'))
    old = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": click, "txn": "t2"})
    assert (old.status, old.json["error"]) == (403, "invalid_api_key")
    new = harness.get("/api/postback", params={"api_key": "key-alpha-2", "click_id": click, "txn": "t2"})
    assert (new.status, new.json) == (200, {"ok": True, "result": "recorded"})
    assert new.fields["key_partner_id"] == "alpha"


def test_reload_changes_offers_and_links(harness) -> None:
    assert harness.get("/t/beta-1").status == 302
    assert harness.get("/t/new-link").status == 404
    text = TEST_CONFIG.replace(
        'id = "beta-app"\npartner = "beta"\n', 'id = "beta-app"\npartner = "beta"\nstatus = "paused"\n'
    ) + '\n[[links]]\nslug = "new-link"\noffer = "alpha-shop"\naffiliate = "aff9"\n'
    harness.rewrite_config(text)
    paused = harness.get("/t/beta-1")
    assert paused.status == 302 and paused.resp.headers["location"] == "https://home.example/"
    assert paused.record["result"] == "offer_inactive"
    added = harness.get("/t/new-link")
    assert added.status == 302 and added.fields["affiliate_id"] == "aff9"


def test_broken_edit_keeps_the_old_config(harness) -> None:
    click = harness.link_click("alpha-1")
    broken = TEST_CONFIG.replace('api_key = "key-alpha"', 'api_key = "key-alpha-2"\ncolour = "red"')
    harness.rewrite_config(broken)
    still = harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": click})
    assert (still.status, still.json["result"]) == (200, "recorded")
    error = harness.receiver.config_store.error
    assert error is not None and "unknown key 'colour'" in error
    assert f"line {line_no(broken, 'colour')}:" in error
    health = harness.get("/healthz")
    assert health.status == 200
    assert health.json["config_error"] == error
    # fixing the file clears the error and applies the edit
    harness.rewrite_config(broken.replace('colour = "red"\n', ""))
    assert harness.get("/api/postback", params={"api_key": "key-alpha", "click_id": click, "txn": "x"}
                       ).json["error"] == "invalid_api_key"


def test_deleted_config_keeps_the_old_one(harness) -> None:
    harness.config_path.unlink()
    assert harness.get("/t/alpha-1").status == 302


def test_healthz_reports_a_broken_edit_at_once(harness) -> None:
    """/healthz is where an operator looks after an edit: it must re-check the file itself."""
    assert harness.get("/healthz").json["config_error"] is None
    harness.rewrite_config(TEST_CONFIG + '\ncolour = "red"\n')
    health = harness.get("/healthz")
    assert health.status == 200
    assert health.json["config_error"] is not None, "a broken config.toml is not reported by /healthz"
    assert "unknown key 'colour'" in health.json["config_error"]
    harness.rewrite_config(TEST_CONFIG)
    assert harness.get("/healthz").json["config_error"] is None
