"""The platforms' own postback signatures, for partners whose profile names a scheme.

Each scheme is what the platform's documentation gives (cited by each function and in the
platform's preset, receiver/contract/presets/), computed with the partner's signing_secret
and compared in constant time (hmac.compare_digest). A missing signature is
`signature_required`, a wrong one `invalid_signature`: the profile answers both as the
platform expects (Tapjoy: 403, which stops its retries). Our own X-Signature scheme
("clickledger") is receiver.postbacks.signature_failure.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote_plus

from receiver.contract.profiles import SIGNATURE_PARAMS, PartnerProfile

# The request headers a scheme reads (lower-case), taken from the WSGI environ by the app.
SIGNATURE_HEADERS = ("x-ayetstudios-security-hash",)
Failure = tuple[str, str] | None


@dataclass(frozen=True)
class SignedRequest:
    """What a platform's signature covers: parameters, the raw query and path as sent, and the
    addresses (scheme://host) the platform may have called us at."""

    params: Mapping[str, Any]
    query: str = ""
    path: str = ""
    url_bases: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # a repeated parameter: its first value is the one read
        return _text(value[0]) if value else None
    return value if isinstance(value, str) else str(value)


def _field(profile: PartnerProfile, params: Mapping[str, Any], name: str) -> str:
    """The value of a profile field as sent (unstripped): its first present parameter."""
    for alias in profile.params.get(name, ()):
        if alias in params:
            return _text(params[alias]) or ""
    return ""


def _same(expected: str, given: str) -> bool:
    """Hex digests compared in constant time, whatever the case the sender wrote."""
    return hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("utf-8", "replace"))


def _signature_param(scheme: str, params: Mapping[str, Any]) -> str | None:
    """The signature as sent in the scheme's parameter, or None."""
    for name in SIGNATURE_PARAMS.get(scheme, ()):
        if name in params:
            return _text(params[name])
    return None


def signature_present(scheme: str, request: SignedRequest) -> bool:
    """Whether the request carries the scheme's signature at all."""
    if scheme in SIGNATURE_PARAMS:
        return bool(_signature_param(scheme, request.params))
    if scheme == "ayet":
        return bool(request.headers.get("x-ayetstudios-security-hash"))
    return False


def tapjoy(secret: bytes, profile: PartnerProfile, request: SignedRequest) -> Failure:
    """Tapjoy, self-managed currency (dev.tapjoy.com/en/support/Self-Managed-Currency): `verifier`
    is the MD5 hash of the id, snuid, currency and secret key, joined by colons:
    md5("{id}:{snuid}:{currency}:{secret_key}"). Tapjoy's own parameter names, always."""
    given = _text(request.params.get("verifier"))
    if not given:
        return ("signature_required", "Tapjoy's verifier is missing: set this currency's secret key in Tapjoy's "
                                      "dashboard (signing_secret holds the same key)")
    parts = [_text(request.params.get(name)) or "" for name in ("id", "snuid", "currency")]
    expected = hashlib.md5(":".join(parts).encode("utf-8") + b":" + secret).hexdigest()  # noqa: S324 (Tapjoy's)
    if not _same(expected, given):
        return ("invalid_signature", "verifier is not md5(id:snuid:currency:secret_key) of this callback: "
                                     "signing_secret must be the currency's secret key")
    return None


def ironsource(secret: bytes, profile: PartnerProfile, request: SignedRequest) -> Failure:
    """ironSource / LevelPlay server-to-server callbacks (developers.is.com, "Handling
    Server-to-Server Callback Events"): `signature` is md5($timestamp.$eventId.$userId.$rewards.$privateKey),
    the values of [TIMESTAMP], [EVENT_ID], [USER_ID] and [REWARDS] as sent. The publisher names
    the parameters of the last three in its callback URL: they are the profile's transaction_id,
    user_id (else click_id) and amount."""
    given = _text(request.params.get("signature"))
    timestamp = _text(request.params.get("timestamp"))
    if not given or timestamp is None:
        return ("signature_required", "ironSource's timestamp and signature parameters are missing: set the "
                                      "private key in the callback settings (signing_secret holds the same key)")
    user = _field(profile, request.params, "user_id") or _field(profile, request.params, "click_id")
    message = (timestamp + _field(profile, request.params, "transaction_id") + user
               + _field(profile, request.params, "amount")).encode("utf-8")
    expected = hashlib.md5(message + secret).hexdigest()  # noqa: S324 (ironSource's)
    if not _same(expected, given):
        return ("invalid_signature", "signature is not md5(timestamp + eventId + userId + rewards + privateKey) "
                                     "of this callback: signing_secret must be the callback's private key")
    return None


def php_urlencode(text: str) -> str:
    """PHP's urlencode (what http_build_query writes): letters, digits and -_. kept, a space as
    +, every other byte %XX in upper case (Python would keep ~)."""
    return quote_plus(text, safe="").replace("~", "%7E")


def ayet_query(query: str) -> str:
    """The string ayeT hashes: the request's parameters as PHP reads them ($_GET: the last of
    a repeated name wins, "." and " " in a name become "_"), ordered by name (ksort, SORT_STRING:
    byte order) and written back with http_build_query."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params[name.replace(".", "_").replace(" ", "_")] = value
    ordered = sorted(params.items(), key=lambda item: item[0].encode("utf-8", "surrogateescape"))
    return "&".join(f"{php_urlencode(name)}={php_urlencode(value)}" for name, value in ordered)


def ayet(secret: bytes, profile: PartnerProfile, request: SignedRequest) -> Failure:
    """ayeT-Studios (docs.ayetstudios.com, "HMAC Security Hash"): the X-Ayetstudios-Security-Hash
    header is hash_hmac('sha256', $sortedQueryString, $apiKey), where $sortedQueryString is
    http_build_query of the GET parameters sorted by name (ksort SORT_STRING)."""
    given = request.headers.get("x-ayetstudios-security-hash")
    if not given:
        return ("signature_required", "the X-Ayetstudios-Security-Hash header is missing")
    expected = hmac.new(secret, ayet_query(request.query).encode("utf-8", "surrogateescape"),
                        hashlib.sha256).hexdigest()
    if not _same(expected, given):
        return ("invalid_signature", "X-Ayetstudios-Security-Hash is not the HMAC-SHA256 of the sorted query "
                                     "parameters: signing_secret must be the publisher API key")
    return None


def without_hash(query: str) -> str:
    """The query BitLabs hashed: the one it sent without its last `hash=` parameter (appended last)."""
    pieces = query.split("&")
    for i in range(len(pieces) - 1, -1, -1):
        if pieces[i].split("=", 1)[0] == "hash":
            del pieces[i]
            break
    return "&".join(pieces)


def bitlabs_urls(request: SignedRequest) -> list[str]:
    """The URLs BitLabs may have hashed: each address we can be called at, the path and the
    query as sent, without the hash."""
    query = without_hash(request.query)
    tail = request.path + (f"?{query}" if query else "")
    return [base + tail for base in dict.fromkeys(request.url_bases)]


def bitlabs(secret: bytes, profile: PartnerProfile, request: SignedRequest) -> Failure:
    """BitLabs (developer.bitlabs.ai, "Securing callbacks through hashing"): `hash` is the HEX
    encoded SHA-1 HMAC of the complete callback URL with the app secret, the URL taken as sent
    (scheme and host included, not re-encoded), before "&hash=" was appended."""
    given = _text(request.params.get("hash"))
    if not given:
        return ("signature_required", "BitLabs' hash parameter is missing")
    urls = bitlabs_urls(request)
    # every candidate is compared (no early exit), each in constant time
    matches = [_same(hmac.new(secret, url.encode("utf-8", "surrogateescape"), hashlib.sha1).hexdigest(), given)
               for url in urls]
    if not any(matches):
        return ("invalid_signature", "hash is not the HMAC-SHA1 of the callback URL with the app secret: "
                                     "signing_secret must be this app's secret, and public_url the address BitLabs "
                                     f"calls (checked: {', '.join(urls)[:300]})")
    return None


def cpx(secret: bytes, profile: PartnerProfile, request: SignedRequest) -> Failure:
    """CPX Research (publisher postback settings, www.cpx-research.com/main/en/publisher): the
    {secure_hash} macro is md5(trans_id + "-" + secure hash key), the transaction id as sent (the
    profile's transaction_id field: trans_id)."""
    given = _signature_param("cpx", request.params)
    if not given:
        return ("signature_required", "CPX's hash is missing: add hash={secure_hash} to the postback URL in CPX's "
                                      "app settings (signing_secret holds the app's secure hash key)")
    message = _field(profile, request.params, "transaction_id").encode("utf-8") + b"-" + secret
    expected = hashlib.md5(message).hexdigest()  # noqa: S324 (CPX's)
    if not _same(expected, given):
        return ("invalid_signature", "hash is not md5(trans_id + \"-\" + secure hash key) of this postback: "
                                     "signing_secret must be the app's secure hash key")
    return None


SCHEMES: dict[str, Callable[[bytes, PartnerProfile, SignedRequest], Failure]] = {
    "tapjoy": tapjoy,
    "ironsource": ironsource,
    "ayet": ayet,
    "bitlabs": bitlabs,
    "cpx": cpx,
}


def platform_signature_failure(profile: PartnerProfile, secret: bytes, request: SignedRequest) -> Failure:
    """(code, message) when the request is not signed as the profile's platform signs, else None."""
    return SCHEMES[profile.signature_scheme](secret, profile, request)
