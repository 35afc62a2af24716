"""Support's look-ups: the fix guide covers every reason, and a click's story comes from the log."""

from __future__ import annotations

import polars as pl

import pipeline
from pipeline.issues import AUTH_REASONS, COUNTING_REASONS, DETAILS, ERROR_REASONS, fix_guide
from pipeline.story import click_story, find_clicks
from tests.support.log_builder import LogBuilder, cid, make_data_dir


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


def test_support_sees_api_keys_cut_wherever_a_request_carries_one():
    # issue 15: a key's fingerprint stands in its place (it used to be its first 4 characters and "…")
    from pipeline.story import for_support, mask_secrets
    from receiver.contract.config import key_digest, key_fingerprint

    def fp(key: str) -> str:
        return f"[key:{key_fingerprint(key_digest(key))}]"

    assert mask_secrets("api_key=sp_live_acme&cid=1") == f"api_key={fp('sp_live_acme')}&cid=1"
    assert mask_secrets("cid=1&API_KEY=sp_live_acme") == f"cid=1&API_KEY={fp('sp_live_acme')}"
    assert mask_secrets("api%5Fkey=sp_live_acme&cid=1") == f"api%5Fkey={fp('sp_live_acme')}&cid=1"  # encoded name
    assert mask_secrets("?key=sp_live_acme") == f"?key={fp('sp_live_acme')}"
    assert mask_secrets('{"api_key": "cw_adv_51d2", "amount": 1}') == f'{{"api_key": "{fp("cw_adv_51d2")}", "amount": 1}}'
    assert mask_secrets('{"apiKey":"cw_adv_51d2"}') == f'{{"apiKey":"{fp("cw_adv_51d2")}"}}'
    # the publisher's key in the path, also on a misspelt path
    assert mask_secrets("/postback/mlk_live_7f3a9c") == f"/postback/{fp('mlk_live_7f3a9c')}"
    assert mask_secrets("/postbacks/mlk_live_7f3a9c") == f"/postbacks/{fp('mlk_live_7f3a9c')}"
    assert mask_secrets("/postback-old/mlk_live_7f3a9c") == f"/postback-old/{fp('mlk_live_7f3a9c')}"
    # a short key shows nothing of itself either
    assert mask_secrets("api_key=abc12&cid=1") == f"api_key={fp('abc12')}&cid=1"
    assert mask_secrets("/postback/abcd") == f"/postback/{fp('abcd')}"
    # the fingerprint is the one postbacks.key_fingerprint holds: the percent-decoded key's
    assert mask_secrets("api_key=a%2Bb") == f"api_key={fp('a+b')}"
    # what is no key stays as it is: our routes, other parameters, no key, an unfilled macro
    for same in ("/postback/advertiser", "/api/v1/earn/postback", "/api/postback", "cid=1&status=paid",
                 "monkey=abcdefghijkl", '{"idempotency_key": "abcdefghijkl"}', "api_key=&cid=1",
                 "api_key={api_key}&cid=1", "api_key=%7Bapi_key%7D", "", None):
        assert mask_secrets(same) == same

    frame = pl.DataFrame({"path": ["/postback/mlk_live_7f3a9c"], "query": ["api_key=sp_live_acme"],
                          "body": [None], "custom_data": ['{"api_key":"sp_live_acme"}'], "seq": [1]})
    assert for_support(frame).row(0) == (f"/postback/{fp('mlk_live_7f3a9c')}", f"api_key={fp('sp_live_acme')}",
                                         None, f'{{"api_key":"{fp("sp_live_acme")}"}}', 1)
