"""The test networks and how to replace a config under a running app.

- TEST_CONFIG: a small config.toml with every kind of partner (one with a profile: the keitaro
  preset, reversals, a templated answer), offer, link, product and user; the `data_dir`
  fixture (tests/conftest.py) writes it.
- AUTH_CONFIG: TEST_CONFIG plus partners that fence (allowed_ips) and sign (signing_secret)
  their postbacks, behind trusted proxies.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HASHED_KEY = "key-hashed"
HASHED_KEY_SHA256 = hashlib.sha256(HASHED_KEY.encode()).hexdigest()

# A small network; line numbers matter only to tests that build their own broken text.
TEST_CONFIG = f"""\
base_currency = "USD"
homepage = "https://home.example/"
public_url = "https://rx.example/"

[[partners]]
id = "alpha"
api_key = "key-alpha"

[[partners]]
id = "beta"
api_key = "key-beta"
postback_auth = "key"
status_updates = true

[[partners]]
id = "open"
postback_auth = "none"

[[partners]]
id = "hashed"
api_key_sha256 = "{HASHED_KEY_SHA256}"

[[offers]]
id = "alpha-shop"
partner = "alpha"
status = "active"
url = "https://shop.example/land?src=net&uid={{click_id}}&tid={{clickid}}"
currency = "eur"
revenue_share = {{ percent = 70 }}
click_ttl_hours = 2

[[offers]]
id = "alpha-paused"
partner = "alpha"
status = "paused"
url = "https://shop.example/paused"

[[offers]]
id = "alpha-pending"
partner = "alpha"
status = "pending"
url = "https://shop.example/pending"

[[offers]]
id = "beta-app"
partner = "beta"
url = "https://beta.example/app#top"
revenue_share = {{ fixed = 1.5 }}

[[offers]]
id = "open-offer"
partner = "open"
url = "https://open.example/go"
currency = "GBP"

[[offers]]
id = "camp-1"
partner = "open"
url = "https://game.example/signup"

[[offers]]
id = "hashed-offer"
partner = "hashed"
url = "https://hashed.example/"

[[offers]]
id = "earn-offer"
partner = "open"
url = "https://advertiser.example/offer"
currency = "USD"

[[links]]
slug = "alpha-1"
offer = "alpha-shop"
affiliate = "aff1"

[[links]]
slug = "alpha-paused-1"
offer = "alpha-paused"
affiliate = "aff1"

[[links]]
slug = "alpha-pending-1"
offer = "alpha-pending"
affiliate = "aff1"

[[links]]
slug = "beta-1"
offer = "beta-app"
affiliate = "aff2"

[[links]]
slug = "open-1"
offer = "open-offer"
affiliate = "aff3"

[[links]]
slug = "camp-a"
offer = "camp-1"
affiliate = "aff3"

[[links]]
slug = "hashed-1"
offer = "hashed-offer"
affiliate = "aff4"

[[products]]
id = "p1"
offer = "earn-offer"
task_url = "https://advertiser.example/offer"
click_ttl_hours = 1

[[products]]
id = "p2"
offer = "earn-offer"
task_url = "https://tasks.example/go/"

[[users]]
id = "u1"
token = "tok-1"

[[users]]
id = "u2"
token = "tok-2"

[[partners]]
id = "prof"
api_key = "key-prof"
preset = "keitaro"

[partners.params]
user_id = ["uid"]
offer_id = ["oid"]
survey_id = ["sid"]

[partners.amounts]
negative = "reversal"
reverses = ["ref"]

[partners.answers]
success = {{ status = 200, body = "OK {{tid}}" }}

[[offers]]
id = "prof-offer"
partner = "prof"
url = "https://prof.example/"

[[links]]
slug = "prof-1"
offer = "prof-offer"
affiliate = "aff5"
"""


SIGNING_SECRET = "whsec-signer-0123456789abcdef"
OPEN_SECRET = "whsec-open-signer-0123456789"

# The test network plus partners that fence and sign their postbacks. trusted_proxies is a
# top-level key, so it goes above the first table.
AUTH_CONFIG = (
    'trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]\n'
    + TEST_CONFIG
    + f"""
[[partners]]
id = "fenced"
api_key = "key-fenced"
allowed_ips = ["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"]

[[partners]]
id = "signer"
api_key = "key-signer"
signing_secret = "{SIGNING_SECRET}"

[[partners]]
id = "fortress"
api_key = "key-fortress"
allowed_ips = ["203.0.113.0/24"]
signing_secret = "{SIGNING_SECRET}"

[[partners]]
id = "open-fenced"
postback_auth = "none"
allowed_ips = ["203.0.113.0/24"]

[[partners]]
id = "open-signer"
postback_auth = "none"
signing_secret = "{OPEN_SECRET}"

[[offers]]
id = "fenced-offer"
partner = "fenced"
url = "https://fenced.example/"

[[offers]]
id = "signer-offer"
partner = "signer"
url = "https://signer.example/"

[[offers]]
id = "fortress-offer"
partner = "fortress"
url = "https://fortress.example/"

[[offers]]
id = "open-fenced-offer"
partner = "open-fenced"
url = "https://open-fenced.example/"

[[offers]]
id = "open-signer-offer"
partner = "open-signer"
url = "https://open-signer.example/"

[[links]]
slug = "fenced-1"
offer = "fenced-offer"
affiliate = "aff1"

[[links]]
slug = "signer-1"
offer = "signer-offer"
affiliate = "aff1"

[[links]]
slug = "fortress-1"
offer = "fortress-offer"
affiliate = "aff1"

[[links]]
slug = "open-fenced-1"
offer = "open-fenced-offer"
affiliate = "aff1"

[[links]]
slug = "open-signer-1"
offer = "open-signer-offer"
affiliate = "aff1"
"""
)


def rewrite_config(path: Path, text: str) -> None:
    """Replace config.toml and make sure its mtime differs, whatever the filesystem's granularity."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    after = path.stat().st_mtime_ns
    if after == before:
        os.utime(path, ns=(after + 1_000_000, after + 1_000_000))
