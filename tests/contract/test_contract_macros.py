"""receiver.contract.macros.find_macro: every macro syntax the platforms use (issue 12's list), and
no real value mistaken for one."""

from __future__ import annotations

import pytest

from receiver.contract.macros import find_macro
from receiver.contract.profiles import load_preset, preset_names


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
