"""`clickledger partner url|check`: a partner's own postback URL, and how a sample postback reads.

- `partner url ID` prints the URL to paste into the partner's platform: public_url +
  /postback/{its api key} with the platform's own macros from its preset's (or its own)
  [macros], e.g. `?subid={external_id}&tid={tid}` for Keitaro.
- `partner check ID URL` reads a sample postback URL through the partner's profile, as the
  receiver would (receiver.profile_check), records nothing, and says how each parameter was read.

Exit codes: 0 done (check: the sample reads cleanly), 1 (check) the sample would be refused or
holds an unfilled macro, 2 a usage error (no such partner, no profile, no config).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from receiver.contract.datadir import DataDir

DEFAULT_DATA = Path("data")


def _fail(message: str) -> int:
    print(f"clickledger partner: {message}", file=sys.stderr)
    return 2


def _config_and_partner(args: argparse.Namespace):  # noqa: ANN202 (Config and Partner, imported lazily)
    """(config, the partner with a profile), or (None, None) after saying why there is none."""
    from receiver.contract.config import ConfigError
    from receiver.contract.config_file import load_config
    from receiver.contract.profiles import preset_names

    try:
        config = load_config(DataDir(args.data).config_path)
    except ConfigError as exc:
        _fail(str(exc))
        return None, None
    partner = config.partners.get(args.id)
    if partner is None:
        known = ", ".join(sorted(config.partners)) or "none"
        _fail(f"no partner {args.id!r} in {config.path} (partners: {known})")
        return None, None
    if partner.profile is None:
        _fail(f"partner {args.id!r} has no preset or profile: it posts back in the seed dialects "
              "(/api/postback, docs/endpoints.md), which have no URL of their own to paste. Give it "
              f"preset = \"NAME\" in {config.path} (presets: {', '.join(preset_names())}), or its own "
              "[partners.params] (docs/integrations.md)")
        return None, None
    return config, partner


def plain_api_key(config_path: Path, partner_id: str) -> str | None:
    """The partner's api_key as written in config.toml (None when it gives only api_key_sha256)."""
    with config_path.open("rb") as f:
        raw = tomllib.load(f)
    for entry in raw.get("partners", []):
        if isinstance(entry, dict) and entry.get("id") == partner_id:
            key = entry.get("api_key")
            return key if isinstance(key, str) else None
    return None


def _url(args: argparse.Namespace) -> int:
    from receiver.contract.profiles import macro_params, postback_url

    config, partner = _config_and_partner(args)
    if partner is None:
        return 2
    profile = partner.profile
    key = plain_api_key(DataDir(args.data).config_path, partner.id)
    if key is None:
        return _fail(f"partner {partner.id!r} gives only api_key_sha256: the key itself is not in config.toml, so "
                     f"the URL cannot be printed whole. It is {postback_url(profile, config.public_url, 'API_KEY')} "
                     "with API_KEY replaced by the partner's api key")
    print(postback_url(profile, config.public_url, key))
    filled = {name for name, _ in macro_params(profile)}
    if not filled & set(profile.params["click_id"]):
        label = f"preset {profile.preset!r}" if profile.preset else "its own profile"
        print(f"note: {label} gives no macro for the click id: the platform appends its parameters itself, or "
              f"add {profile.params['click_id'][0] if profile.params['click_id'] else 'click_id'}=<its click id "
              "macro> to the URL (or set [partners.macros] click_id)", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from receiver.contract.timeutil import utc_now
    from receiver.profile_check import read_sample

    config, partner = _config_and_partner(args)
    if partner is None:
        return 2
    if "?" not in args.url:
        return _fail(f"{args.url!r} has no query: give the whole postback URL the platform sent or would send, "
                     "e.g. 'https://rx.example/postback/KEY?subid=...&payout=...'")
    reading = read_sample(partner, args.url, config, utc_now())
    print("\n".join(describe(reading)))
    return 0 if reading.clean else 1


def describe(reading) -> list[str]:  # noqa: ANN001 (receiver.profile_check.SampleReading)
    """The lines `partner check` prints for a sample's reading."""
    label = f"preset {reading.preset}" if reading.preset else "its own profile"
    lines = [f"partner {reading.partner_id} ({label}): nothing is recorded; the click is not looked up"]
    if reading.path_note:
        lines.append(f"path: {reading.path_note}")
    lines.append("fields:")
    for r in reading.readings:
        if not r.names:
            lines.append(f"  {r.field:<15} not read by this profile")
        elif r.param is None:
            lines.append(f"  {r.field:<15} not sent (reads {' or '.join(r.names)})")
        else:
            lines.append(f"  {r.field:<15} {r.param} = {r.value!r}")
    fields = reading.fields
    if fields.get("transaction_id"):
        lines.append(f"transaction: {fields['transaction_id']} ({fields.get('transaction_id_source')})")
    if fields.get("amount") is not None or fields.get("reversal"):
        amount = fields.get("reversal_amount") if fields.get("reversal") else fields.get("amount")
        currency = fields.get("currency") or "the offer's currency"
        lines.append(f"amount: {amount} {currency}" + (" (a reversal)" if fields.get("reversal") else ""))
    mapping = "; ".join(f"{status}: {', '.join(v for v, s in reading.statuses.items() if s == status)}"
                        for status in ("approved", "pending", "rejected")
                        if any(s == status for s in reading.statuses.values()))
    raw = reading.status_raw
    lines.append(f"status: {raw!r} -> {reading.status}" if raw is not None
                 else f"status: not sent -> {reading.status or 'approved'}")
    lines.append(f"  mapping ({mapping})")
    if reading.status == "unknown":
        lines.append(f"  {raw!r} is not mapped: it would not count; map it in [partners.statuses], e.g. "
                     f"approved = [\"{raw}\"]")
    if reading.ignored:
        lines.append("ignored (kept in custom_data): " + ", ".join(f"{k} = {v!r}" for k, v in reading.ignored.items()))
    else:
        lines.append("ignored: none")
    for name, value, macro in reading.macros:
        lines.append(f"unsubstituted macro: {name} = {value!r} holds {macro!r}: the platform did not fill it; "
                     "use the macro it documents for this value")
    lines.append(f"signature: {reading.signature}")
    if reading.refusal:
        lines.append(f"would be refused: {reading.refusal[0]}: {reading.refusal[1]}")
    elif reading.macros:
        lines.append("would be read with the macros above as values: fix them in the platform")
    elif reading.signature_failed:
        lines.append("would be refused for its signature (above)")
    else:
        lines.append("reads cleanly: the receiver would accept it if its click exists")
    return lines


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `partner url` and `partner check` to clickledger's parser."""
    from clickledger.cli import Parser, add_command, add_data_option

    p = subparsers.add_parser(
        "partner", help="a partner's postback URL to paste into its platform, or how a sample postback reads",
        description="Partners with a preset or profile (config.toml) have a postback URL of their own. "
                    "`url` prints it with the platform's macros; `check` reads a sample postback through it.")
    partner_sub = p.add_subparsers(dest="partner_command", required=True, metavar="COMMAND", parser_class=Parser,
                                   help="url: the URL to paste into the platform; check: read a sample postback")
    q = add_command(
        partner_sub, "url", "print the partner's postback URL with its platform's macros, ready to paste",
        "Print public_url + /postback/{the partner's api key} with the platform's own macros ({clickid}, "
        "##CLICK_ID##, [%UID%], (clickid)...) from its preset's [macros] (or its own [partners.macros]). "
        "A partner without a preset or profile has no such URL: exit 2 with what to set.",
        _url, lambda a: a.data)
    q.add_argument("id", metavar="ID", help="the partner's id in config.toml")
    add_data_option(q, DEFAULT_DATA, "the data directory whose config.toml to read")
    q = add_command(
        partner_sub, "check", "read a sample postback URL through the partner's profile, recording nothing",
        "Read URL's parameters as the receiver would for this partner (nothing is recorded, the click is "
        "not looked up) and print each field's parameter and value, the status mapping, the parameters "
        "ignored, any unsubstituted macro, the signature check and whether the receiver would refuse it. "
        "Exit 0 when it reads cleanly, 1 when it would be refused or holds an unfilled macro, 2 on a usage "
        "error.", _check, lambda a: a.data)
    q.add_argument("id", metavar="ID", help="the partner's id in config.toml")
    q.add_argument("url", metavar="URL", help="a postback URL as the platform sends it (quote it in the shell)")
    add_data_option(q, DEFAULT_DATA, "the data directory whose config.toml to read")
