"""docs/integrations.md's table of platforms is rendered from the preset files and kept in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.contract.presets_doc import SCHEMES, main, render_doc, render_table
from receiver.contract.profiles import SIGNATURE_SCHEMES, preset_names

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "integrations.md"


def test_the_integrations_table_is_the_presets() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, (
        "docs/integrations.md differs from receiver/contract/presets/: run "
        "`.venv/bin/python -m receiver.contract.presets_doc docs/integrations.md` and review the diff")


def test_the_table_has_every_preset_with_its_url_statuses_signature_and_answers() -> None:
    table = render_table()
    rows = table.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{name}`" for name in preset_names()]
    keitaro = next(row for row in rows if row.startswith("| `keitaro`"))
    assert "`PUBLIC_URL/postback/KEY?subid={external_id}&tid={tid}&payout={revenue}&status={status}`" in keitaro
    assert "approved: `sale`, `rebill`; pending: `lead`; rejected: `rejected`" in keitaro
    ironsource = next(row for row in rows if row.startswith("| `ironsource`"))
    assert "success: 200 `{eventId}:OK`" in ironsource and "md5(timestamp + eventId" in ironsource
    tapjoy = next(row for row in rows if row.startswith("| `tapjoy`"))
    assert "a refusal no retry can fix: 403 `{error}`" in tapjoy
    assert set(SCHEMES) == set(SIGNATURE_SCHEMES)


def test_rendering_needs_the_markers_and_rewrites_a_stale_table(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="presets:table"):
        render_doc("# no table here\n")
    stale = tmp_path / "integrations.md"
    stale.write_text("intro\n<!-- presets:table -->\n| old |\n<!-- /presets:table -->\nend\n", encoding="utf-8")
    assert main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == f"intro\n<!-- presets:table -->\n{render_table()}<!-- /presets:table -->\nend\n"
    assert "rewritten" in capsys.readouterr().out
    assert main([]) == 2 and main([str(tmp_path / "missing.md")]) == 2
