"""Postback authentication in config.toml: allowed_ips, trusted_proxies, signing_secret(_env).

Also the client address rule (REMOTE_ADDR, or X-Forwarded-For only behind a trusted
proxy). AUTH_CONFIG (tests/support/network.py) is the network the other test_auth_* modules use.
"""

from __future__ import annotations

import ipaddress

import pytest

from receiver.config_store import ConfigStore
from receiver.contract.config import ConfigError
from receiver.contract.config_file import parse_config
from tests.support.network import AUTH_CONFIG, SIGNING_SECRET, TEST_CONFIG, rewrite_config

FENCED = """\
[[partners]]
id = "p1"
api_key = "k1"
allowed_ips = {value}

[[offers]]
id = "o1"
partner = "p1"
url = "https://o.example/"
"""


def refused_at(text: str, line: int, fragment: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.line == line, str(info.value)
    assert f"line {line}:" in str(info.value) and fragment in str(info.value), str(info.value)
    return info.value


def test_auth_config_parses() -> None:
    config = parse_config(AUTH_CONFIG)
    assert config.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    fenced = config.partners["fenced"]
    assert fenced.allowed_ips is not None and len(fenced.allowed_ips) == 3
    assert fenced.ip_allowed("203.0.113.77") and fenced.ip_allowed("198.51.100.7")
    assert fenced.ip_allowed("2001:db8::1") and fenced.ip_allowed("::ffff:203.0.113.5")
    assert not fenced.ip_allowed("198.51.100.8") and not fenced.ip_allowed(None)
    assert not fenced.ip_allowed("not-an-ip")
    assert config.partners["signer"].signing_secret == SIGNING_SECRET.encode()
    assert SIGNING_SECRET not in repr(config.partners["signer"])
    assert (
        config.partners["alpha"].allowed_ips is None
        and config.partners["alpha"].signing_secret is None
    )
    assert parse_config(TEST_CONFIG).trusted_proxies == ()


@pytest.mark.parametrize(
    "value, fragment",
    [
        ('["203.0.113.0/33"]', "'203.0.113.0/33' is not an IP address or CIDR block"),
        ('["10.0.0.1/8"]', "has host bits set"),
        ('["203.0.113.0/24", "nope"]', "'nope' is not an IP address"),
        ('["2001:db8::/129"]', "not an IP address or CIDR block"),
        ("[]", "non-empty list"),
        ('"203.0.113.0/24"', "non-empty list"),
        ("[42]", "42 is not an IP address"),
    ],
)
def test_bad_allowed_ips_are_refused_with_their_line(value: str, fragment: str) -> None:
    refused_at(FENCED.format(value=value), 4, fragment)


def test_bad_trusted_proxies_are_refused_with_their_line() -> None:
    text = 'base_currency = "USD"\ntrusted_proxies = ["127.0.0.1", "localhost"]\n' + FENCED.format(
        value='["203.0.113.0/24"]'
    )
    refused_at(text, 2, "trusted_proxies: 'localhost' is not an IP address")
    refused_at('trusted_proxies = "127.0.0.1"\n', 1, "non-empty list")


def test_signing_secret_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    base = '[[partners]]\nid = "p1"\napi_key = "k1"\n'
    refused_at(base + 'signing_secret = "short"\n', 4, "at least 16 characters")
    refused_at(
        base + 'signing_secret = "0123456789abcdef0"\nsigning_secret_env = "X"\n', 5, "not both"
    )
    monkeypatch.delenv("CLICKLEDGER_TEST_SECRET", raising=False)
    refused_at(base + 'signing_secret_env = "CLICKLEDGER_TEST_SECRET"\n', 4, "not set or empty")
    monkeypatch.setenv("CLICKLEDGER_TEST_SECRET", "from-the-environment")
    config = parse_config(base + 'signing_secret_env = "CLICKLEDGER_TEST_SECRET"\n')
    assert config.partners["p1"].signing_secret == b"from-the-environment"
    refused_at(base + 'signing_secrets = "0123456789abcdef0"\n', 4, "unknown key 'signing_secrets'")


# ---------------------------------------------------------------- the client address


@pytest.mark.parametrize(
    "remote, forwarded, expected",
    [
        ("192.0.2.1", None, "192.0.2.1"),
        (
            "192.0.2.1",
            "203.0.113.5",
            "192.0.2.1",
        ),  # a forged header from an untrusted peer is ignored
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # the client wrote the left entry
        ("127.0.0.1", "6.6.6.6, 203.0.113.5, 10.1.2.3", "203.0.113.5"),  # a second trusted hop
        ("127.0.0.1", "10.9.9.9, 10.1.2.3", "10.9.9.9"),  # every hop trusted: the left-most
        ("127.0.0.1", " , ", "127.0.0.1"),
        ("127.0.0.1", "garbage", "garbage"),  # matches no allowlist: refused, and logged as sent
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:127.0.0.1", "203.0.113.5", "203.0.113.5"),
    ],
)
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(
    remote: str, forwarded: str | None, expected: str
) -> None:
    assert parse_config(AUTH_CONFIG).client_ip(remote, forwarded) == expected


def test_without_trusted_proxies_forwarded_for_is_never_believed() -> None:
    assert parse_config(TEST_CONFIG).client_ip("127.0.0.1", "203.0.113.5") == "127.0.0.1"


def test_allowlist_edits_are_picked_up_without_restart(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(AUTH_CONFIG, encoding="utf-8")
    store = ConfigStore(path)
    assert not store.current().partners["fenced"].ip_allowed("192.0.2.1")
    rewrite_config(path, AUTH_CONFIG.replace('"198.51.100.7"', '"192.0.2.1"'))
    assert store.current().partners["fenced"].ip_allowed("192.0.2.1")
    rewrite_config(path, AUTH_CONFIG.replace('"198.51.100.7"', '"192.0.2.300"'))
    assert (
        store.current().partners["fenced"].ip_allowed("192.0.2.1")
    )  # a broken edit keeps the last good
    assert store.error is not None and "192.0.2.300" in store.error
