"""Support's look-ups: the fix guide covers every reason, and a click's story comes from the log."""

from __future__ import annotations

import polars as pl
from pipeline_helpers import LogBuilder, cid, make_data_dir

import pipeline
from pipeline.issues import AUTH_REASONS, COUNTING_REASONS, DETAILS, ERROR_REASONS, fix_guide
from pipeline.story import click_story, find_clicks


def test_every_issue_reason_has_a_fix_for_the_partner():
    reasons = set(DETAILS) | set(ERROR_REASONS.values()) | set(AUTH_REASONS) | set(COUNTING_REASONS)
    guide = fix_guide()
    assert reasons <= set(guide["reason"]), reasons - set(guide["reason"])
    assert guide.filter(pl.any_horizontal(pl.all().str.len_chars() == 0)).is_empty()


def test_the_story_of_a_click_reads_the_raw_requests(tmp_path):
    data = make_data_dir(tmp_path / "data")
    b = LogBuilder()
    b.click(cid(1))
    b.postback(cid(1), amount="10")
    b.postback(cid(1), amount="10", result="duplicate")
    b.click(cid(2))
    b.write(data)
    pipeline.run(data)
    wh = pipeline.load(data)
    story = click_story(wh, cid(1))
    assert story.found and story.click.height == 1 and story.conversions.height == 1
    assert story.requests.select("kind", "result").rows() == [
        ("click", "click"), ("postback", "recorded"), ("postback", "duplicate")]
    assert not click_story(wh, "no-such-id").found
    assert find_clicks(wh, text=cid(1)[-6:])["click_id"].to_list() == [cid(1)]
    assert set(find_clicks(wh, partner="acme")["click_id"]) == {cid(1), cid(2)}
