"""`clickledger init`: a commented starter DATA/config.toml with freshly generated keys.

The keys come from `secrets`, never from a template: a server must not start on keys that
anyone who read the README knows (those of the demo network, `clickledger init --demo`).
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from string import Template

from receiver.contract.config_file import parse_config
from receiver.contract.datadir import DataDir

STARTER_CONFIG = Template("""\
# clickledger config, written by `clickledger init` on $written.
# Every key is described in docs/configuration.md. The receiver re-reads this file
# when it changes: an edit (a regenerated api_key) applies from the next request, and a
# broken edit is refused while the last good config keeps serving (see /healthz).
#
# The api_key and token values below were generated for you and are secrets: give each
# only to its owner. Each example entry below is one of its kind: rename, copy, delete.

# The currency every amount is converted to for totals and wallet credits (3 letters).
# fx_rates.csv gives the rate of every other currency, day by day.
base_currency = "USD"

# Where a visitor of a paused or pending offer's tracking link is sent (no click is made).
homepage = "https://example.com/"

# This receiver's address as advertisers and earn apps reach it (scheme, host, port).
# An earn click hands out <public_url>/api/v1/earn/postback?click_id=... as postback_url,
# so set it to the public address when you serve beyond this machine.
public_url = "http://127.0.0.1:8080"

# Optional: peers (your reverse proxy) whose X-Forwarded-For header is believed when
# checking a partner's allowed_ips. Addresses or CIDR blocks; without it, none is.
# trusted_proxies = ["127.0.0.1"]

# Optional: who may read GET /metrics (Prometheus), by address or CIDR block, judged like
# allowed_ips (through a trusted proxy, the real client). Default: this machine only.
# metrics_allowed_ips = ["127.0.0.1", "::1"]
# Optional: let the forwarder (`clickledger forward`) send to loopback, private and link-local
# addresses (a publisher endpoint on this machine or network). Off by default: a config typo
# must not make us call our own services.
# allow_private_targets = false

# An advertiser (a partner): it sends a postback when a click of one of its offers converts.
[[partners]]
id = "advertiser1"                  # your name for it: offers refer to it
api_key = "$api_key"
                                    # ^ its secret key, sent as api_key=..., the X-API-Key header,
                                    #   or in the path /postback/<key>. To keep only a hash here:
                                    #   api_key_sha256 = "<sha256 hex of the key>" instead.
postback_auth = "key"               # "key": every postback must carry the key (api_key_required
                                    # otherwise); "none": public postbacks, the click id is the check
status_updates = false              # false: a conversion's status is final at its first postback;
                                    # true: later postbacks may change it (pending -> approved, chargebacks)
# allowed_ips = ["203.0.113.0/24", "198.51.100.7"]
                                    # ^ optional: postbacks only from these addresses (CIDR or address)
# signing_secret = "$signing_secret"
                                    # ^ optional: every postback must carry an HMAC-SHA256 X-Signature
                                    #   with this secret (16+ characters; generated for you, unused
                                    #   until uncommented). Or signing_secret_env = "VARIABLE" to read
                                    #   it from the environment.
# preset = "keitaro"
                                    # ^ optional: the partner's platform (keitaro, affise, tapjoy,
                                    #   ironsource, ayet, bitlabs), whose parameter names, statuses,
                                    #   signature and answers it then speaks on its own URL
                                    #   <public_url>/postback/<key>. A partner may set the same keys
                                    #   itself, over its preset's: signature_scheme, [partners.params],
                                    #   [partners.statuses], [partners.amounts], [partners.answers],
                                    #   [partners.macros] (docs/configuration.md, Partner profiles)

# An offer: what the partner pays for, and the share its affiliates or users earn.
[[offers]]
id = "offer1"                       # your name for it: links and products refer to it
partner = "advertiser1"             # the partner that pays for it (and whose key its postbacks carry)
status = "active"                   # active | paused | pending: the tracking links of a paused or
                                    # pending offer send visitors to homepage, and make no click
url = "https://advertiser.example/landing?click_id={click_id}"
                                    # ^ where a tracking link sends the visitor; {click_id} (or
                                    #   {clickid}) becomes our click id, which the partner posts back
currency = "USD"                    # the currency of the partner's amounts (when a postback names none)
revenue_share = { percent = 70 }    # what the affiliate or user earns: { percent = N } of each
                                    # conversion's amount, or { fixed = N } in the offer's currency
click_ttl_hours = 720               # optional: a postback this long after its click is refused
                                    # (click_expired); without it, clicks never expire

# Optional: a partner that names what the user completed by its own survey id (the survey_id
# or offer_id parameter of its postbacks, seed 001) gets it mapped to one of its offers here,
# and each conversion carries that offer as campaign_id: by the exact id, else the first
# pattern that matches, else the partner's default. An id none of its entries maps is kept,
# counted as any other, and listed in postback_issues as unmapped_survey. The mapping applies
# when the pipeline runs: fix it here and run `clickledger run` again to correct history.
# [[survey_campaigns]]
# partner = "advertiser1"           # the partner whose survey ids these are
# survey_id = "1001"                # the exact id; or pattern = "UK-*" (a glob: * ? [...]),
#                                   # or default = true (every id no other entry maps)
# campaign_id = "offer1"            # one of this partner's offers

# A tracking link: one per offer and affiliate. Visitors open <public_url>/t/<slug>.
[[links]]
slug = "offer1-affiliate1"          # letters, digits and . _ ~ - only
offer = "offer1"                    # the offer it sends visitors to
affiliate = "affiliate1"            # who earns the offer's revenue share for its conversions

# An earn-app task: a user's click on it (POST /api/v1/earn/products/<id>/click) gets a
# redirectUrl to task_url carrying the click id and the postback_url the advertiser calls.
[[products]]
id = "task1"                        # the product id in the click URL
offer = "offer1"                    # its terms (partner, currency, revenue share)
task_url = "https://advertiser.example/task"
                                    # ^ the task; an app's taskUrl must start with it (same host, path below)
click_ttl_hours = 24                # a postback this long after its click is refused (default 24)

# An earn-app user: the app sends `Authorization: Bearer <token>` with each task click, and
# the user earns the offer's revenue share of each counted conversion (wallet credits).
[[users]]
id = "user1"                        # your id for the user, as in the wallet ledger
token = "$user_token"
                                    # ^ the user's secret bearer token (unique per user)

# Optional: a publisher (the affiliate of tracking links, or an earn product's id) whose
# postback endpoints `clickledger forward` tells about its conversions (docs/forwarding.md).
# [[affiliates]]
# id = "affiliate1"                 # the links' affiliate (or an earn product id)
# points_per_unit = 1000            # points per 1.00 of base currency paid to it (optional)
# [[affiliates.postbacks]]          # one or more endpoints of that publisher
# url = "https://publisher.example/cb?click={sub1}&payout={payout}&status={status}&tx={transaction_id}"
# method = "GET"                    # or "POST" (a JSON body of every macro's value)
# events = ["approved", "reversed"] # of: pending, approved, rejected, reversed
#                                   and optionally signing_secret, a Standard Webhooks key (whsec_ and
#                                   base64): then every delivery carries webhook-id, webhook-timestamp
#                                   and webhook-signature headers
""")

STARTER_FX_RATES = "date,currency,rate\n"


def new_api_key() -> str:
    """A partner's api key: 160 random bits, in hex so it survives any URL, header or shell."""
    return secrets.token_hex(20)


def new_user_token() -> str:
    """An earn-app user's bearer token: 192 random bits, in hex."""
    return secrets.token_hex(24)


def starter_config_text() -> str:
    """The starter config, with fresh keys; checked by the receiver's own validation."""
    text = STARTER_CONFIG.substitute(
        written=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        api_key=new_api_key(),
        signing_secret=secrets.token_hex(24),
        user_token=new_user_token(),
    )
    parse_config(text)  # a template edit that breaks validation fails here, not at `serve`
    return text


def write_secret_file(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (it holds keys); replaces a file there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def init_data_dir(data_dir: Path, *, demo: bool = False, force: bool = False) -> int:
    """`clickledger init`: DATA/config.toml (starter, or `demo`) and fx_rates.csv where none.

    Returns 0, or 2 after saying why on stderr: an existing config.toml is kept unless
    `force`, and then moved aside rather than lost.
    """
    from clickledger.demo import mark_demo_dir, write_demo_config, write_fx_rates

    data_dir = Path(data_dir)
    config_path = DataDir(data_dir).config_path
    if data_dir.exists() and not data_dir.is_dir():
        print(f"clickledger init: {data_dir} is not a directory", file=sys.stderr)
        return 2
    if config_path.exists() and not force:
        print(f"clickledger init: {config_path} exists; not replacing it (its keys may be in use). "
              f"Pass --force to replace it (the old one is kept beside it), or choose another --data.",
              file=sys.stderr)
        return 2
    was_empty = not data_dir.exists() or not any(data_dir.iterdir())
    data_dir.mkdir(parents=True, exist_ok=True)
    if config_path.exists():
        kept = config_path.with_name(f"config.toml.replaced-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        config_path.rename(kept)
        print(f"moved the old config to {kept}")
    if demo:
        write_demo_config(data_dir)
        if was_empty:
            mark_demo_dir(data_dir)
        print(f"wrote {config_path}: the demo network, whose api keys and tokens are published in "
              f"the README (for trying clickledger on 127.0.0.1; `clickledger serve` refuses them on "
              f"any other address)")
    else:
        write_secret_file(config_path, starter_config_text())
        print(f"wrote {config_path}: one partner, offer, tracking link, earn product and user, each "
              f"key commented, with freshly generated api key and token (readable by you only)")
    fx_path = DataDir(data_dir).fx_rates_path
    if fx_path.exists():
        print(f"kept {fx_path}")
    elif demo:
        write_fx_rates(data_dir)
        print(f"wrote {fx_path}: the demo's EUR and GBP rates of the last 30 days")
    else:
        fx_path.write_text(STARTER_FX_RATES, encoding="utf-8")
        print(f"wrote {fx_path}: its header only; add a line date,currency,rate per day for each "
              f"currency other than the base currency (rate: base-currency units for one unit)")
    print(f"next: clickledger serve --data {data_dir}")
    return 0


__all__ = ["STARTER_FX_RATES", "init_data_dir", "new_api_key", "new_user_token",
           "starter_config_text", "write_secret_file"]
