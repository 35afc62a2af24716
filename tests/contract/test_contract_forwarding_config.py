"""[[affiliates]] and their [[affiliates.postbacks]] in config.toml: read, and refused naming the line."""

from __future__ import annotations

import base64

import pytest

from receiver.contract.config import ConfigError
from receiver.contract.config_file import parse_config

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()

GOOD = f"""\
allow_private_targets = true

[[affiliates]]
id = "aff1"
points_per_unit = 1000

[[affiliates.postbacks]]
url = "https://pub.example/cb?click={{sub1}}&payout={{payout}}&status={{status}}&tx={{transaction_id}}&pts={{points}}"

[[affiliates.postbacks]]
url = "http://127.0.0.1:9/hook?c={{custom.campaign-name}}&id={{delivery_id}}"
method = "post"
events = ["pending", "approved", "rejected", "reversed"]
signing_secret = "{SECRET}"

[[affiliates]]
id = "aff2"
"""


def test_affiliates_and_their_endpoints_are_read():
    config = parse_config(GOOD)
    assert config.allow_private_targets is True
    aff1, aff2 = config.affiliates["aff1"], config.affiliates["aff2"]
    assert str(aff1.points_per_unit) == "1000" and aff2.points_per_unit is None and aff2.postbacks == ()
    first, second = aff1.postbacks
    assert (first.method, first.events, first.signing_secret, first.line) == ("GET", ("approved", "reversed"),
                                                                              None, 7)
    assert (second.method, second.events, second.line) == ("POST", ("pending", "approved", "rejected",
                                                                     "reversed"), 10)
    assert second.signing_secret == SECRET.encode()
    assert first.endpoint_id != second.endpoint_id
    assert "whsec" not in repr(second)


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value


def test_an_unknown_macro_is_refused_naming_its_line():
    text = GOOD.replace("{{custom.campaign-name}}", "{{clickid}}").replace("{custom.campaign-name}", "{clickid}")
    error = refused(text)
    assert error.line == 11
    assert "unknown macro {clickid}" in str(error) and "{click_id}" in str(error)


@pytest.mark.parametrize(("url", "says"), [
    ("https://pub.example/cb?x={custom.}", "unknown macro {custom.}"),
    ("https://pub.example/cb?x={click_id", "not part of a {macro}"),
    ("https://{sub1}.example/cb", "scheme, host or port"),
    ("ftp://pub.example/cb", "absolute http(s) URL"),
    ("https://pub.example/c b", "without spaces"),
])
def test_bad_urls_are_refused(url, says):
    error = refused(f'[[affiliates]]\nid = "a"\n[[affiliates.postbacks]]\nurl = "{url}"\n')
    assert says in str(error) and error.line == 4


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.9", "169.254.169.254",
                                  "[::1]", "[fe80::1]", "0.0.0.0"])
def test_private_targets_are_refused_unless_allowed(host):
    text = f'[[affiliates]]\nid = "a"\n[[affiliates.postbacks]]\nurl = "http://{host}:8000/cb"\n'
    error = refused(text)
    assert "allow_private_targets = true" in str(error) and error.line == 4
    assert parse_config("allow_private_targets = true\n" + text).affiliates["a"].postbacks


@pytest.mark.parametrize(("entry", "key_line", "says"), [
    ('method = "PUT"', 5, "method must be one of"),
    ('events = ["paid"]', 5, "events must be a non-empty list"),
    ("events = []", 5, "events must be a non-empty list"),
    ('events = ["approved", "approved"]', 5, "events must be a non-empty list"),
    ('signing_secret = "plain-text-secret-1234"', 5, "whsec_"),
    ('signing_secret = "whsec_!!!"', 5, "not base64"),
    ('signing_secret = "whsec_AAAA"', 5, "24 to 64 bytes"),
    ("retries = 3", 5, "unknown key 'retries'"),
])
def test_bad_endpoint_keys_are_refused_naming_their_line(entry, key_line, says):
    text = f'[[affiliates]]\nid = "a"\n[[affiliates.postbacks]]\nurl = "https://p.example/"\n{entry}\n'
    error = refused(text)
    assert says in str(error) and error.line == key_line


def test_the_second_endpoints_line_is_named():
    text = ('[[affiliates]]\nid = "a"\n[[affiliates.postbacks]]\nurl = "https://p.example/1"\n'
            '[[affiliates.postbacks]]\nurl = "https://p.example/2?{nope}"\n')
    assert refused(text).line == 6


def test_affiliate_level_problems():
    assert "points_per_unit must be a finite number" in str(refused('[[affiliates]]\nid = "a"\npoints_per_unit = -1\n'))
    assert refused('[[affiliates]]\nid = "a"\npoints_per_unit = true\n').line == 3
    assert "duplicate affiliate id" in str(refused('[[affiliates]]\nid = "a"\n[[affiliates]]\nid = "a"\n'))
    same = '[[affiliates.postbacks]]\nurl = "https://p.example/"\n'
    assert "same method and url twice" in str(refused('[[affiliates]]\nid = "a"\n' + same + same))
    assert refused('allow_private_targets = "yes"\n').line == 1
