"""Partner profiles in config.toml (receiver.contract.profiles): presets as data, a partner's
own keys over its preset's, the status mapping, and every mistake refused with the file and
line, like any other config error."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.contract.config import ConfigError
from receiver.contract.config_file import parse_config
from receiver.contract.profiles import (
    DEFAULT_PARAMS,
    PROFILE_FIELDS,
    SIGNATURE_SCHEMES,
    Answer,
    load_preset,
    parse_preset,
    preset_names,
    status_for,
)
from receiver.contract.toml_lines import TomlLocator

SHIPPED = {"keitaro", "affise", "tapjoy", "ironsource", "bitlabs", "ayet"}

HEAD = 'public_url = "https://rx.example"\n\n'


def partner(body: str, *, key: str = "k-1", partner_id: str = "p") -> str:
    return f'[[partners]]\nid = "{partner_id}"\napi_key = "{key}"\n{body}'


def refused(text: str, line: int | None, *fragments: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("data/config.toml"))
    error = info.value
    assert error.line == line, f"{error} (expected line {line})"
    assert str(error).startswith(f"data/config.toml, line {line}: " if line else "data/config.toml: ")
    for fragment in fragments:
        assert fragment in str(error), str(error)
    return error


# ---------------------------------------------------------------- presets are data


def test_the_six_presets_ship_and_load_with_their_documentation() -> None:
    assert set(preset_names()) >= SHIPPED
    for name in preset_names():
        preset = load_preset(name)
        assert preset.name == name
        assert preset.docs and all(url.startswith("https://") for url in preset.docs)
        assert set(preset.keys.params) <= set(PROFILE_FIELDS)
        assert preset.keys.signature_scheme in (None, *SIGNATURE_SCHEMES)


@pytest.mark.parametrize(("name", "scheme"), [("tapjoy", "tapjoy"), ("ironsource", "ironsource"),
                                              ("ayet", "ayet"), ("bitlabs", "bitlabs")])
def test_the_signature_presets_name_their_scheme(name: str, scheme: str) -> None:
    assert load_preset(name).keys.signature_scheme == scheme


def test_a_broken_preset_file_names_its_file_and_line() -> None:
    text = 'name = "x"\ndocs = ["https://docs.example/"]\n\n[statuses]\napproved = ["ok"]\npending = ["OK"]\n'
    with pytest.raises(ConfigError) as info:
        parse_preset("x", text, Path("presets/x.toml"))
    assert (info.value.path, info.value.line) == (Path("presets/x.toml"), 6)
    assert "'ok' is mapped twice" in str(info.value)
    with pytest.raises(ConfigError, match=r"presets/x.toml, line 2: .*docs must list"):
        parse_preset("x", 'name = "x"\ndocs = ["http://insecure.example/"]\n', Path("presets/x.toml"))
    with pytest.raises(ConfigError, match=r"line 3: preset 'x': unknown key 'colour'"):
        parse_preset("x", 'name = "x"\ndocs = ["https://d.example/"]\ncolour = "red"\n', Path("presets/x.toml"))
    with pytest.raises(ConfigError, match="name must be 'x'"):
        parse_preset("x", 'name = "y"\ndocs = ["https://d.example/"]\n', Path("presets/x.toml"))


# ---------------------------------------------------------------- resolution


def test_a_partner_without_profile_keys_is_a_seed_dialect_partner() -> None:
    config = parse_config(HEAD + partner(""))
    assert config.partners["p"].profile is None


def test_a_preset_resolves_to_a_profile() -> None:
    profile = parse_config(HEAD + partner('preset = "keitaro"\n')).partners["p"].profile
    assert profile is not None and profile.preset == "keitaro"
    assert profile.params["click_id"] == ("subid", "click_id", "external_id")
    assert profile.params["transaction_id"] == ("tid", "transaction_id")
    assert profile.params["user_id"] == ()  # a field the preset does not read
    assert profile.statuses["sale"] == "approved" and profile.statuses["lead"] == "pending"
    assert profile.signature_scheme == "none"
    assert profile.docs == load_preset("keitaro").docs
    assert profile.macros["click_id"] == "{external_id}"
    assert parse_config(HEAD + partner('preset = "keitaro"\n')).partners["p"].status_updates is True  # the preset's


def test_a_partners_own_keys_override_its_presets_key_by_key() -> None:
    text = HEAD + partner('preset = "keitaro"\nstatus_updates = false\n\n'
                          '[partners.params]\nclick_id = ["cid"]\n\n'
                          '[partners.statuses]\napproved = ["sale", "approved"]\n\n'
                          '[partners.answers]\nsuccess = { body = "OK" }\n')
    config = parse_config(text)
    p = config.partners["p"]
    assert p.status_updates is False
    profile = p.profile
    assert profile.params["click_id"] == ("cid",)  # replaced
    assert profile.params["transaction_id"] == ("tid", "transaction_id")  # the preset's
    assert profile.statuses["approved"] == "approved" and profile.statuses["sale"] == "approved"
    assert "rebill" not in profile.statuses  # the preset's approved list is replaced, not extended
    assert profile.statuses["lead"] == "pending"  # the preset's pending list stays
    assert profile.answers.success == Answer(status=None, body="OK")


def test_answers_merge_with_the_presets_key_by_key() -> None:
    profile = parse_config(HEAD + partner(
        'preset = "tapjoy"\nsigning_secret = "s"\n[partners.answers.permanent_refusal]\nbody = "no: {error}"\n'
    )).partners["p"].profile
    assert profile.answers.permanent_refusal.status == 403  # the preset's
    assert profile.answers.permanent_refusal.body == "no: {error}"  # its own
    assert profile.answers.success.body == "OK"


def test_a_partner_without_a_preset_can_set_the_same_keys() -> None:
    profile = parse_config(HEAD + partner(
        '[partners.statuses]\napproved = ["1"]\npending = ["2", "5"]\nrejected = ["3"]\n'
        '[partners.amounts]\ndecimal_comma = true\nthousands_separator = true\ncurrency_symbol = true\n'
    )).partners["p"].profile
    assert profile.preset is None and profile.docs == ()
    assert profile.params["click_id"] == DEFAULT_PARAMS["click_id"]  # the seed vocabulary's names
    assert profile.statuses["5"] == "pending" and profile.statuses["3"] == "rejected"
    assert profile.amounts.decimal_comma and profile.amounts.thousands_separator and profile.amounts.currency_symbol


def test_status_for() -> None:
    mapping = {"sale": "approved", "lead": "pending", "rejected": "rejected"}
    assert status_for(" SALE ", mapping) == "approved"
    assert status_for("lead", mapping) == "pending"
    assert status_for("weird", mapping) == "unknown"  # never silently rejected with a profile
    assert status_for("test", mapping) == "test"
    assert status_for(None, mapping) == "approved" and status_for("", mapping) == "approved"
    # a seed-dialect partner (no mapping): seed 003's vocabulary, an unknown value is rejected
    assert status_for("weird", None) == "rejected"
    assert status_for("completed", None) == "approved" and status_for(None, None) == "approved"


def test_answer_templates_fill_parameters_and_the_error() -> None:
    answer = Answer(body="{eventId}:OK {{literal}} {error} {missing}")
    assert answer.render({"eventId": "e-1"}, "click_not_found") == "e-1:OK {literal} click_not_found "
    assert Answer(body="{n}").render({"n": 18446744073709551617}) == "18446744073709551617"


# ---------------------------------------------------------------- mistakes, with their lines


def test_an_unknown_preset_names_the_line_and_the_known_ones() -> None:
    text = HEAD + partner('preset = "keitaroo"\n')
    refused(text, 6, "unknown preset 'keitaroo'", "keitaro", "tapjoy")


def test_an_unknown_field_in_params() -> None:
    text = HEAD + partner('preset = "keitaro"\n\n[partners.params]\nclick_id = ["c"]\nclickid = ["x"]\n')
    refused(text, 10, "unknown key 'clickid' in partners.params", "click_id, transaction_id")


def test_an_unknown_profile_key_on_the_partner() -> None:
    refused(HEAD + partner('preset = "keitaro"\nparam = 1\n'), 7, "unknown key 'param' in [[partners]]")


def test_a_status_value_mapped_twice() -> None:
    text = HEAD + partner('[partners.statuses]\napproved = ["ok", "done"]\nrejected = ["no", "Done"]\n')
    refused(text, 8, "'done' is mapped twice", "approved", "rejected")


def test_a_value_clashing_with_the_presets_list_blames_the_partners_own_key() -> None:
    text = HEAD + partner('preset = "affise"\n\n[partners.statuses]\napproved = ["1", "2"]\n')
    refused(text, 9, "'2' is mapped twice", "its own approved list", "preset 'affise''s pending list")


def test_a_status_outside_approved_pending_rejected() -> None:
    refused(HEAD + partner('[partners.statuses]\nreversed = ["r"]\n'), 7, "unknown key 'reversed' in "
            "partners.statuses")


@pytest.mark.parametrize(("answers", "line", "fragment"), [
    ('[partners.answers]\nsuccess = { status = 404 }\n', 7, "success.status must be an HTTP status from 200 to 299"),
    ('[partners.answers.refusal]\nstatus = 503\n', 7, "refusal.status must be an HTTP status from 200 to 499"),
    ('[partners.answers]\npermanent_refusal = { status = 99 }\n', 7, "from 200 to 499"),
    ('[partners.answers]\nsuccess = { status = 200, body = "{eventId:OK" }\n', 7, "body is not a template"),
    ('[partners.answers]\nsuccess = { body = "{a.__class__}" }\n', 7, "is not a placeholder"),
    ('[partners.answers]\nfailure = { status = 400 }\n', 7, "unknown key 'failure' in partners.answers"),
    ('[partners.answers]\nsuccess = { status = 200, type = "x" }\n', 7, "unknown key 'type'"),
])
def test_answers_are_checked(answers: str, line: int, fragment: str) -> None:
    refused(HEAD + partner(answers), line, fragment)


def test_an_answer_status_out_of_range_in_a_sub_table_names_its_own_line() -> None:
    text = HEAD + partner('[partners.answers.success]\nbody = "OK"\nstatus = 302\n')
    refused(text, 8, "success.status")


@pytest.mark.parametrize(("body", "line", "fragment"), [
    ('[partners.amounts]\ndecimal_comma = "yes"\n', 7, "decimal_comma must be true or false"),
    ('[partners.amounts]\nnegative = "ignore"\n', 7, "negative must be one of 'refuse', 'reversal'"),
    ('[partners.amounts]\nrounding = 2\n', 7, "unknown key 'rounding' in partners.amounts"),
    ('status_updates = true\n[partners.amounts]\nnegative = "reversal"\n', 8, "needs reverses"),
    ('[partners.amounts]\nnegative = "reversal"\nreverses = ["ref"]\n', 7, "needs status_updates = true"),
    ('signature_scheme = "md5"\n', 6, "signature_scheme must be one of"),
    ('[partners.params]\nclick_id = [1]\n', 7, "list of names"),
    ('[partners.macros]\nclick_id = ""\n', 7, "macro text"),
])
def test_profile_keys_are_checked(body: str, line: int, fragment: str) -> None:
    refused(HEAD + partner(body), line, fragment)


def test_a_platform_signature_needs_the_partners_secret() -> None:
    text = HEAD + partner('preset = "tapjoy"\n')
    refused(text, 6, "signature_scheme 'tapjoy' (from preset 'tapjoy')", "signing_secret")
    # signature_scheme = "none" accepts unsigned postbacks, on purpose
    assert parse_config(HEAD + partner('preset = "tapjoy"\nsignature_scheme = "none"\n')).partners["p"].profile \
        .signature_scheme == "none"
    refused(HEAD + partner('signature_scheme = "none"\nsigning_secret = "0123456789abcdefgh"\n'), 6,
            "nothing would check it")


def test_a_platforms_secret_may_be_short_ours_may_not() -> None:
    tapjoy = parse_config(HEAD + partner('preset = "tapjoy"\nsigning_secret = "abc"\n')).partners["p"]
    assert tapjoy.signing_secret == b"abc"
    refused(HEAD + partner('signature_scheme = "clickledger"\nsigning_secret = "abc"\n'), 7,
            "at least 16 characters")
    own = parse_config(HEAD + partner('params = { click_id = ["c"] }\nsigning_secret = "0123456789abcdefgh"\n'))
    assert own.partners["p"].profile.signature_scheme == "clickledger"  # a secret without a scheme: ours


def test_a_profile_partner_needs_an_api_key() -> None:
    text = HEAD + '[[partners]]\nid = "p"\npostback_auth = "none"\npreset = "keitaro"\n'
    refused(text, 3, "its own /postback/{key} URL", "api_key")


def test_inline_and_dotted_profile_keys_name_their_line() -> None:
    text = HEAD + partner('statuses = { approved = ["a"], pending = ["a"] }\n')
    refused(text, 6, "'a' is mapped twice")
    text = HEAD + partner('statuses.approved = ["a"]\nstatuses.pending = ["b", "a"]\n')
    refused(text, 7, "'a' is mapped twice")


def test_the_locator_finds_nested_keys_of_the_right_entry() -> None:
    text = ('top = 1\n[params]\nclick_id = ["x"]\n\n[[partners]]\nid = "a"\n[partners.statuses]\n'
            'approved = ["x"]\n\n[[partners]]\nid = "b"\nstatuses.pending = ["y"]\n[partners.answers.success]\n'
            'status = 200\n')
    locate = TomlLocator(text)
    assert locate.line_of_path(None, 0, ("params", "click_id")) == 3
    assert locate.line_of_path("partners", 0, ("statuses", "approved")) == 8
    assert locate.line_of_path("partners", 0, ("statuses", "pending")) == 7  # the table: where it goes
    assert locate.line_of_path("partners", 1, ("statuses", "pending")) == 12
    assert locate.line_of_path("partners", 1, ("answers", "success", "status")) == 14
    assert locate.line_of_path("partners", 1, ("amounts",)) == 10  # none: the entry's own line
