"""Unsubstituted macros in every syntax the platforms use are found (issue 12), and real values
never read as macros: a false positive would refuse a real postback."""

from __future__ import annotations

import pytest

from receiver.contract.macros import find_macro
from receiver.contract.params import click_id_shape
from receiver.contract.profiles import load_preset, preset_names

# (value as sent, the macro found): each syntax of the issue, whole and inside a value
MACROS = [
    ("{clickid}", "{clickid}"), ("{{click_id}}", "{{click_id}}"), ("[clickid]", "[clickid]"),
    ("[%UID%]", "[%UID%]"), ("##CLICK_ID##", "##CLICK_ID##"), ("#clickid#", "#clickid#"),
    ("${(clickid)!}", "${(clickid)!}"), ("${sub1}", "${sub1}"), ("(clickid)", "(clickid)"),
    ("%CLICKID%", "%CLICKID%"), ("%%CLICKID%%", "%%CLICKID%%"), ("$CLICKID$", "$CLICKID$"),
    ("@clickid@", "@clickid@"), ("<clickid>", "<clickid>"), ("__CLICK_ID__", "__CLICK_ID__"),
    ("REPLACE", "REPLACE"), ("OPTIONAL", "OPTIONAL"), ("REPLACE_ME", "REPLACE_ME"),
    ("%7Bclick_id%7D", "%7Bclick_id%7D"), ("%7bpayout%7d", "%7bpayout%7d"),
    ("{{ click_id }}", "{{ click_id }}"), ("{sub1|none}", "{sub1|none}"),
    ("order-{txid}", "{txid}"), (" {payout} ", "{payout}"), ("tx_[TRANSACTION_ID]", "[TRANSACTION_ID]"),
]

# Values real postbacks carry: none is a macro.
REAL = [
    "3f2b1c4e-1234-4abc-8def-0123456789ab", "3F2B1C4E-1234-4ABC-8DEF-0123456789AB", "12.50", "1,234.50",
    "€1.234,50", "1 234,5", "-7.50", "0", "18446744073709551616", "1e12", "NaN", "0x10",
    "user@example.com", "first.last+tag@mail.example.org", "https://example.com/p?a=1&b=2#frag",
    "https://e.com/a%20b", "dGVzdA==", "YWJj+/==", "U0FMRQ==", "approved", "sale", "COMPLETE", "reversed",
    "1", "2", "TEST-123", "clk_abc123", "MT-1", "r-123", "ord_2024_001", "a_b_c", "__init__", "50%", "100%",
    "20%-30%", "C#", "a#b", "#1#", "x@y", "Q&A", "(555) 123-4567", "order (gift)", "(1)", "[0]", "[1,2]", "[]",
    "{}", "{0}", '{"a":1}', "<3", "$5", "$5.00", "2024-01-01T00:00:00Z", "REPLACEMENT", "Optional", "optional",
    "12 USD", "EUR", "", " ", "#", "##", "%",
]


@pytest.mark.parametrize(("sent", "macro"), MACROS)
def test_every_syntax_is_found_and_named(sent: str, macro: str) -> None:
    assert find_macro(sent) == macro


@pytest.mark.parametrize("value", REAL)
def test_real_values_are_never_macros(value: str) -> None:
    assert find_macro(value) is None


@pytest.mark.parametrize(("sent", "_"), MACROS)
def test_a_click_id_holding_any_syntax_reads_as_a_macro(sent: str, _: str) -> None:
    assert click_id_shape(sent) == "macro"


# From the presets' side (issue 12): what `clickledger partner url` writes must read as a macro when sent back unfilled.
@pytest.mark.parametrize(("value", "macro"), [
    ("{clickid}", "{clickid}"),
    ("{{click_id}}", "{{click_id}}"),
    ("[click_id]", "[click_id]"),
    ("[%UID%]", "[%UID%]"),
    ("##CLICK_ID##", "##CLICK_ID##"),
    ("#s2#", "#s2#"),
    ("${(last_attributed_touch_data.click_id)!}", "${(last_attributed_touch_data.click_id)!}"),
    ("${clickid}", "${clickid}"),
    ("(clickid)", "(clickid)"),
    ("%CLICK_ID%", "%CLICK_ID%"),
    ("%%CLICK_ID%%", "%%CLICK_ID%%"),
    ("$CLICKID$", "$CLICKID$"),
    ("@clickid@", "@clickid@"),
    ("<clickid>", "<clickid>"),
    ("__CLICK_ID__", "__CLICK_ID__"),
    ("REPLACE", "REPLACE"),
    ("OPTIONAL", "OPTIONAL"),
    ("{status:lead=0 sale=1}", "{status:lead=0 sale=1}"),
    ("abc-{sub1}", "{sub1}"),  # inside a value too
])
def test_every_platforms_macro_syntax_is_found(value: str, macro: str) -> None:
    assert find_macro(value) == macro


@pytest.mark.parametrize("value", [
    None, "", "8cc877ee-af19-488d-b28d-216fb866b996", "8CC877EE-AF19-488D-B28D-216FB866B996", "3.50", "-0.50",
    "€1.234,50", "1 234,5", "sale", "RECONCILIATION", "TX-1", "r-381f99333613b41392b15183d69a7240308e8461",
    "19816.4321.112233", "dbcd6bb8ca677344592842a52b4fca9bec36cd4b", "user@example.com", "50%", "a#b", "Replace me",
])
def test_real_values_are_not_macros(value: str | None) -> None:
    assert find_macro(value) is None


@pytest.mark.parametrize("name", preset_names())
def test_each_presets_own_macros_are_recognised_when_left_unfilled(name: str) -> None:
    """What `clickledger partner url` writes is what a platform that fails to fill it sends back."""
    for macro in load_preset(name).keys.macros.values():
        assert find_macro(macro) == macro, (name, macro)
