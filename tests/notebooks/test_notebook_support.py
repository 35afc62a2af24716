"""What the notebooks share (pipeline.notebook_support), without a notebook around it."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pipeline
from pipeline.notebook_support import default_data_dir, load_or_explain, mark_difference
from tests.support.log_builder import LogBuilder, cid, make_data_dir


def test_the_data_directory_comes_from_the_environment_outside_marimo(monkeypatch):
    monkeypatch.delenv("CLICKLEDGER_DATA", raising=False)
    assert default_data_dir() == "data/demo"
    monkeypatch.setenv("CLICKLEDGER_DATA", "/srv/clicks")
    assert default_data_dir() == "/srv/clicks"


def test_load_or_explain_says_what_to_do_offers_to_run_and_runs(tmp_path):
    wh, instead = load_or_explain(str(tmp_path / "nothing"), SimpleNamespace(value=False))
    assert wh is None and "No warehouse in" in instead.text and "make demo" in instead.text

    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10")
    b.write(data)
    button = SimpleNamespace(value=False, text="<button>run it</button>")
    wh, instead = load_or_explain(f"  {data}  ", button)  # as typed, spaces and all
    assert wh is None and "has a log (1 segment(s)) but no warehouse yet" in instead.text
    assert "run it" in instead.text

    button.value = True  # pressed: derives the warehouse, then loads it
    wh, instead = load_or_explain(str(data), button)
    assert instead is None and wh.conversions.height == 1
    assert wh.conversions.height == pipeline.load(data).conversions.height

    shutil.rmtree(data / "warehouse")
    (data / "log" / next(p.name for p in (data / "log").iterdir())).write_text("not a log record\n")
    wh, instead = load_or_explain(str(data), button)
    assert wh is None and "The pipeline refused this log" in instead.text


def test_an_unknown_click_id_is_shown_with_where_it_differs():
    shown = mark_difference("6eb5852d-409f-abda", "6eb5852d-409f-a5da")
    assert "6eb5852d-409f-a<mark style='background:#ffd54f'>b</mark>da" in shown
    assert "6eb5852d-409f-a<mark style='background:#ffd54f'>5</mark>da" in shown
    assert "<x>" not in mark_difference("<x>", "<y>") and "&lt;" in mark_difference("<x>", "<y>")


def test_times_show_to_the_second():
    from datetime import UTC, datetime

    import polars as pl

    from pipeline.notebook_support import display_times

    frame = pl.DataFrame({"at": [datetime(2026, 11, 21, 8, 27, 35, 731555, tzinfo=UTC)],
                          "received_at": ["2026-11-21T08:27:35.731555Z"], "n": [1]})
    assert display_times(frame).row(0) == ("2026-11-21 08:27:35", "2026-11-21 08:27:35", 1)
