"""A network of partners with the shipped presets, and each platform's postback signed as its
documentation says (computed here from the documented formula, not by receiver.signatures).

- PRESETS_CONFIG: one partner per shipped preset (every file of receiver/contract/presets/),
  each with an offer and a link, plus "formats", a partner without a preset whose amounts use
  a decimal comma, thousands separators and a currency symbol.
- The signers: tapjoy_verifier, ironsource_signature, ayet_hash, bitlabs_url, cpx_hash.
"""

from __future__ import annotations

import hashlib
import hmac

PUBLIC_URL = "https://rx.example"
TAPJOY_SECRET = "tapjoy-currency-secret"
IRONSOURCE_SECRET = "iron-private-key"
AYET_SECRET = "ayet-publisher-api-key"
# BitLabs' own documented example secret (developer.bitlabs.ai, "Securing callbacks through hashing")
BITLABS_SECRET = "JLOIAUNMHFli7ZJOQVEzm98rzqnm9"
CPX_SECRET = "cpx-app-secure-hash-key"

PRESET_PARTNERS = {
    # partner id: (preset, api key, secret, offer currency)
    "keitaro-net": ("keitaro", "key-keitaro", None, "EUR"),
    "affise-net": ("affise", "key-affise", None, "USD"),
    "tapjoy-app": ("tapjoy", "key-tapjoy", TAPJOY_SECRET, "USD"),
    "ironsource-app": ("ironsource", "key-ironsource", IRONSOURCE_SECRET, "USD"),
    "ayet-wall": ("ayet", "key-ayet", AYET_SECRET, "USD"),
    "bitlabs-wall": ("bitlabs", "key-bitlabs", BITLABS_SECRET, "USD"),
    "voluum-trk": ("voluum", "key-voluum", None, "USD"),
    "binom-trk": ("binom", "key-binom", None, "EUR"),
    "redtrack-trk": ("redtrack", "key-redtrack", None, "USD"),
    "everflow-net": ("everflow", "key-everflow", None, "USD"),
    "tune-net": ("tune", "key-tune", None, "USD"),
    "cake-net": ("cake", "key-cake", None, "USD"),
    "impact-net": ("impact", "key-impact", None, "USD"),
    "adgate-wall": ("adgate", "key-adgate", None, "USD"),
    "appsflyer-app": ("appsflyer", "key-appsflyer", None, "USD"),
    "adjust-app": ("adjust", "key-adjust", None, "USD"),
    "branch-app": ("branch", "key-branch", None, "USD"),
    "cpx-wall": ("cpx", "key-cpx", CPX_SECRET, "USD"),
}


def _preset_partners() -> str:
    out = []
    for partner_id, (preset, key, secret, currency) in PRESET_PARTNERS.items():
        secret_line = f'signing_secret = "{secret}"\n' if secret else ""
        out.append(f'[[partners]]\nid = "{partner_id}"\napi_key = "{key}"\npreset = "{preset}"\n{secret_line}\n'
                   f'[[offers]]\nid = "{partner_id}-offer"\npartner = "{partner_id}"\n'
                   f'url = "https://{partner_id}.example/"\ncurrency = "{currency}"\n'
                   'revenue_share = { percent = 50 }\n\n'
                   f'[[links]]\nslug = "{partner_id}-1"\noffer = "{partner_id}-offer"\naffiliate = "aff1"\n\n')
    return "".join(out)


PRESETS_CONFIG = f'''base_currency = "USD"
public_url = "{PUBLIC_URL}"

{_preset_partners()}[[partners]]
id = "formats"
api_key = "key-formats"
status_updates = true

[partners.amounts]
decimal_comma = true
thousands_separator = true
currency_symbol = true

[[offers]]
id = "formats-offer"
partner = "formats"
url = "https://formats.example/"
currency = "EUR"

[[links]]
slug = "formats-1"
offer = "formats-offer"
affiliate = "aff1"
'''

FX_RATES = "date,currency,rate\n2020-01-01,EUR,1.1\n"


def tapjoy_verifier(request_id: str, snuid: str, currency: str, secret: str = TAPJOY_SECRET) -> str:
    """Tapjoy: verifier = md5 of id, snuid, currency and the secret key, joined by colons."""
    return hashlib.md5(f"{request_id}:{snuid}:{currency}:{secret}".encode()).hexdigest()


def ironsource_signature(timestamp: str, event_id: str, user_id: str, rewards: str,
                         secret: str = IRONSOURCE_SECRET) -> str:
    """ironSource: md5($timestamp.$eventId.$userId.$rewards.$privateKey)."""
    return hashlib.md5(f"{timestamp}{event_id}{user_id}{rewards}{secret}".encode()).hexdigest()


def php_urlencode(text: str) -> str:
    """PHP's urlencode, byte by byte: letters, digits and -_. as they are, a space as +, every
    other byte as %XX in upper case."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in "-_."):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def php_http_build_query(params: dict[str, str]) -> str:
    """PHP's http_build_query after ksort($params, SORT_STRING): names in byte order."""
    ordered = sorted(params.items(), key=lambda item: item[0].encode())
    return "&".join(f"{php_urlencode(name)}={php_urlencode(value)}" for name, value in ordered)


def ayet_hash(params: dict[str, str], secret: str = AYET_SECRET) -> str:
    """ayeT: hash_hmac('sha256', http_build_query(ksort($_GET)), $apiKey)."""
    return hmac.new(secret.encode(), php_http_build_query(params).encode(), hashlib.sha256).hexdigest()


def bitlabs_url(path_and_query: str, secret: str = BITLABS_SECRET, base: str = PUBLIC_URL) -> str:
    """BitLabs: the URL it calls, with &hash= its HEX HMAC-SHA1 of the complete URL appended.
    Returns the path and query to request (the host is ours)."""
    digest = hmac.new(secret.encode(), (base + path_and_query).encode(), hashlib.sha1).hexdigest()
    return f"{path_and_query}&hash={digest}"


def cpx_hash(trans_id: str, secret: str = CPX_SECRET) -> str:
    """CPX Research: {secure_hash} = md5(trans_id + "-" + secure hash key)."""
    return hashlib.md5(f"{trans_id}-{secret}".encode()).hexdigest()
