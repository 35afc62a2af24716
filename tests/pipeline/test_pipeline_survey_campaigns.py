"""Survey ids mapped to campaigns (issue 14): a partner's survey_id (seed 001: survey_id or offer_id)
maps to one of our offers by its exact id, then the first glob pattern, then the partner's default.
The conversion carries survey_id, campaign_id and campaign_match; an unmapped survey id is kept
(the conversion counts as any other) and listed in postback_issues as unmapped_survey with the
config lines that would map it. The mapping applies when the pipeline derives: fixing config.toml
and running again corrects history.

Each case goes through the receiver (TestClient) into the log, then the pipeline.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pipeline
from pipeline.errors import PipelineConfigError
from pipeline.issues import fix_guide
from receiver.contract.config import ConfigError
from receiver.contract.config_file import parse_config
from tests.support.harness import Harness

OFFERS_AND_LINKS = '''base_currency = "USD"

[[partners]]
id = "surveys"
api_key = "key-surveys"

[[partners]]
id = "plain"
api_key = "key-plain"

[[partners]]
id = "wall"
api_key = "key-wall"

[partners.params]
click_id = ["uid"]
transaction_id = ["tx"]
survey_id = ["sid"]

[[offers]]
id = "general"
partner = "surveys"
url = "https://surveys.example/"
revenue_share = { percent = 50 }

[[offers]]
id = "uk-surveys"
partner = "surveys"
url = "https://surveys.example/uk"

[[offers]]
id = "survey-1001"
partner = "surveys"
url = "https://surveys.example/1001"

[[offers]]
id = "plain-offer"
partner = "plain"
url = "https://plain.example/"

[[offers]]
id = "wall-offer"
partner = "wall"
url = "https://wall.example/"

[[links]]
slug = "s"
offer = "general"
affiliate = "aff1"

[[links]]
slug = "p"
offer = "plain-offer"
affiliate = "aff1"

[[links]]
slug = "w"
offer = "wall-offer"
affiliate = "aff1"
'''
MAPPING = '''
[[survey_campaigns]]
partner = "surveys"
survey_id = "1001"
campaign_id = "survey-1001"

[[survey_campaigns]]
partner = "surveys"
survey_id = "UK-1"
campaign_id = "survey-1001"

[[survey_campaigns]]
partner = "surveys"
pattern = "UK-*"
campaign_id = "uk-surveys"

[[survey_campaigns]]
partner = "wall"
pattern = "W*"
campaign_id = "wall-offer"
'''
CONFIG = OFFERS_AND_LINKS + MAPPING
# the lines of partner surveys' [[survey_campaigns]] headers (the first three entries)
SURVEYS_ENTRY_LINES = [n for n, line in enumerate(CONFIG.splitlines(), start=1) if line == "[[survey_campaigns]]"][:3]
DEFAULT = '''
[[survey_campaigns]]
partner = "surveys"
default = true
campaign_id = "general"
'''


@pytest.fixture
def net(make_harness: Any, tmp_path: Path) -> Harness:
    data = tmp_path / "surveys"
    data.mkdir()
    (data / "config.toml").write_text(CONFIG, encoding="utf-8")
    (data / "fx_rates.csv").write_text("date,currency,rate\n", encoding="utf-8")
    return make_harness(data)


def seed001(h: Harness, click: str, tx: str, key: str = "key-surveys", **params: str) -> None:
    """A seed 001 postback: the key in the path, the survey as survey_id or offer_id."""
    ex = h.get(f"/postback/{key}", params={"click_id": click, "transaction_id": tx, "payout": "2", **params})
    assert ex.json["result"] == "recorded", ex.json


def conversion(tables: dict[str, pl.DataFrame], tx: str) -> dict[str, Any]:
    return tables["conversions"].filter(pl.col("transaction_id") == tx).row(0, named=True)


def mapped(tables: dict[str, pl.DataFrame], tx: str) -> tuple[Any, Any, Any]:
    row = conversion(tables, tx)
    return row["survey_id"], row["campaign_id"], row["campaign_match"]


def derive(h: Harness) -> dict[str, pl.DataFrame]:
    tables, _ = pipeline.derive(h.data_dir, use_cache=False)
    return tables


def test_an_exact_survey_id_maps_to_its_campaign(net: Harness) -> None:
    click = net.link_click("s")
    seed001(net, click, "T-exact", survey_id="1001")
    seed001(net, click, "T-offer", offer_id="1001")  # seed 001 accepts offer_id too
    seed001(net, click, "T-both", survey_id="1001", offer_id="UK-9")  # survey_id first
    seed001(net, click, "T-exact-over-pattern", survey_id="UK-1")  # exact wins over a matching pattern
    tables = derive(net)
    assert mapped(tables, "T-exact") == ("1001", "survey-1001", "exact")
    assert mapped(tables, "T-offer") == ("1001", "survey-1001", "exact")
    assert mapped(tables, "T-both") == ("1001", "survey-1001", "exact")
    assert mapped(tables, "T-exact-over-pattern") == ("UK-1", "survey-1001", "exact")
    row = conversion(tables, "T-exact")
    assert (row["offer_id"], row["counts"]) == ("general", True)  # the click's offer and money are untouched
    assert tables["postback_issues"].is_empty()


def test_a_pattern_maps_what_no_exact_id_does(net: Harness) -> None:
    click = net.link_click("s")
    seed001(net, click, "T-uk", survey_id="UK-77")
    seed001(net, click, "T-case", survey_id="uk-77")  # patterns are case-sensitive: unmapped
    tables = derive(net)
    assert mapped(tables, "T-uk") == ("UK-77", "uk-surveys", "pattern")
    assert mapped(tables, "T-case") == ("uk-77", None, "unmapped")


def test_the_partner_default_maps_every_other_survey_id(net: Harness) -> None:
    net.rewrite_config(CONFIG + DEFAULT)
    click = net.link_click("s")
    seed001(net, click, "T-fr", survey_id="FR-9")
    seed001(net, click, "T-uk", survey_id="UK-5")
    seed001(net, click, "T-none")  # no survey id: nothing to map, the default does not apply
    tables = derive(net)
    assert mapped(tables, "T-fr") == ("FR-9", "general", "default")
    assert mapped(tables, "T-uk") == ("UK-5", "uk-surveys", "pattern")  # a pattern still wins over the default
    assert mapped(tables, "T-none") == (None, None, None)
    assert tables["postback_issues"].is_empty()


def test_an_unmapped_survey_id_is_kept_counted_and_listed_with_the_line_that_maps_it(net: Harness) -> None:
    click = net.link_click("s")
    seed001(net, click, "T-fr", survey_id="FR-9")
    tables = derive(net)
    row = conversion(tables, "T-fr")
    assert (row["survey_id"], row["campaign_id"], row["campaign_match"]) == ("FR-9", None, "unmapped")
    assert (row["counts"], row["amount"], row["affiliate_payout"]) == (True, D(2), D(1))  # never dropped
    issues = tables["postback_issues"]
    assert issues["reason"].to_list() == ["unmapped_survey"]
    issue = issues.row(0, named=True)
    assert (issue["event_id"], issue["partner_id"], issue["transaction_id"]) == (row["event_id"], "surveys", "T-fr")
    detail = issue["detail"]
    at = ", ".join(map(str, SURVEYS_ENTRY_LINES))
    assert f"add to config.toml (its entries are at lines {at}): [[survey_campaigns]]" in detail, detail
    assert ('[[survey_campaigns]] partner = "surveys", survey_id = "FR-9", '
            'campaign_id = "<one of: general, uk-surveys, survey-1001>"') in detail, detail
    advice = fix_guide().filter(pl.col("reason") == "unmapped_survey").row(0, named=True)
    assert "[[survey_campaigns]]" in advice["fix"] and "config.toml line" in advice["fix"]


def test_fixing_the_mapping_and_running_again_corrects_history(net: Harness) -> None:
    click = net.link_click("s")
    seed001(net, click, "T-fr", survey_id="FR-9")
    net.close()
    first = pipeline.run(net.data_dir)
    assert mapped({"conversions": first.warehouse.conversions}, "T-fr") == ("FR-9", None, "unmapped")
    assert first.issues == {"unmapped_survey": 1}

    net.rewrite_config(CONFIG + '\n[[survey_campaigns]]\npartner = "surveys"\nsurvey_id = "FR-9"\n'
                                'campaign_id = "general"\n')
    again = pipeline.run(net.data_dir)
    assert again.cached_segments == again.segments == 1  # the staged log holds no mapping
    assert mapped({"conversions": again.warehouse.conversions}, "T-fr") == ("FR-9", "general", "exact")
    assert again.warehouse.postback_issues.is_empty() and again.issues == {}

    net.rewrite_config(CONFIG.replace('survey_id = "1001"', 'survey_id = "1002"'))  # and back: unmapped again
    third = pipeline.run(net.data_dir)
    assert mapped({"conversions": third.warehouse.conversions}, "T-fr") == ("FR-9", None, "unmapped")


def test_a_partner_without_survey_campaigns_keeps_the_id_and_has_no_issue(net: Harness) -> None:
    click = net.link_click("p")
    seed001(net, click, "T-plain", key="key-plain", survey_id="1001")
    tables = derive(net)
    assert mapped(tables, "T-plain") == ("1001", None, None)
    assert tables["postback_issues"].is_empty()


def test_a_profile_partner_s_survey_id_field_is_mapped(net: Harness) -> None:
    click = net.link_click("w")
    ex = net.get("/postback/key-wall", params={"uid": click, "tx": "T-w", "sid": "W-3", "payout": "1"})
    assert ex.json["result"] == "recorded" and ex.fields["survey_id"] == "W-3"
    ex = net.get("/postback/key-wall", params={"uid": click, "tx": "T-x", "sid": "X-3", "payout": "1"})
    tables = derive(net)
    assert mapped(tables, "T-w") == ("W-3", "wall-offer", "pattern")
    assert mapped(tables, "T-x") == ("X-3", None, "unmapped")
    assert tables["postback_issues"]["reason"].to_list() == ["unmapped_survey"]


def test_a_repeated_or_numeric_survey_id_reads_as_the_receiver_reads_fields(net: Harness) -> None:
    click = net.link_click("s")
    ex = net.get("/postback/key-surveys", params={"click_id": click, "transaction_id": "T-repeat",
                                                  "survey_id": ["1001", "UK-2"]}, params_csv=False)
    assert ex.json["result"] == "recorded" and ex.custom_data["survey_id"] == ["1001", "UK-2"]
    ex = net.post("/postback/key-surveys", json={"click_id": click, "transaction_id": "T-json", "survey_id": 1001})
    assert ex.json["result"] == "recorded"
    tables = derive(net)
    assert mapped(tables, "T-repeat") == ("1001", "survey-1001", "exact")  # the first value, as for a field
    assert mapped(tables, "T-json") == ("1001", "survey-1001", "exact")


def test_a_conversion_listed_for_another_reason_gets_its_unmapped_survey_row_too(net: Harness) -> None:
    click = net.link_click("s")
    seed001(net, click, "T-eur", survey_id="FR-9", currency="EUR")  # no EUR rate: fx_missing
    issues = derive(net)["postback_issues"].sort("reason")
    assert issues["reason"].to_list() == ["fx_missing", "unmapped_survey"]  # one row per issue of a postback
    assert issues["event_id"].n_unique() == 1
    assert "Survey id 'FR-9' of partner 'surveys' maps to no campaign" in issues["detail"][1]


# ---------------------------------------------------------------- config load


@pytest.mark.parametrize(("entry", "key", "message"), [
    ('partner = "nobody"\nsurvey_id = "1"\ncampaign_id = "general"', "partner",
     "partner 'nobody' is not defined"),
    ('partner = "surveys"\ncampaign_id = "general"', None,
     "give exactly one of survey_id"),
    ('partner = "surveys"\nsurvey_id = "1"\npattern = "1*"\ncampaign_id = "general"', "pattern",
     "got survey_id and pattern"),
    ('partner = "surveys"\ndefault = false\ncampaign_id = "general"', "default", "default must be true"),
    ('partner = "surveys"\npattern = "UK"\ncampaign_id = "general"', "pattern", "has no wildcard"),
    ('partner = "surveys"\nsurvey_id = ""\ncampaign_id = "general"', "survey_id", "must be a non-empty string"),
    ('partner = "surveys"\nsurvey_id = "1"\ncampaign_id = "nope"', "campaign_id",
     "campaign_id 'nope' is not an offer defined in [[offers]]"),
    ('partner = "surveys"\nsurvey_id = "1"\ncampaign_id = "wall-offer"', "campaign_id",
     "campaign_id 'wall-offer' is an offer of partner 'wall', not of 'surveys'"),
    ('partner = "surveys"\nsurvey_id = "1001"\ncampaign_id = "general"', "survey_id",
     "survey_id '1001' is already mapped for this partner by entry 1"),
    ('partner = "surveys"\npattern = "UK-*"\ncampaign_id = "general"', "pattern",
     "pattern 'UK-*' is already mapped for this partner by entry 3"),
    ('partner = "surveys"\ndefault = true\ncampaign_id = "general"\n\n[[survey_campaigns]]\npartner = "surveys"\n'
     'default = true\ncampaign_id = "uk-surveys"', "default", "a default is already mapped for this partner by "
     "entry 5"),
    ('partner = "surveys"\nsurvey_id = "1"\ncampaign_id = "general"\nsurvey = "2"', "survey",
     "unknown key 'survey' in [[survey_campaigns]]"),
])
def test_a_bad_entry_is_refused_naming_the_entry_and_its_line(entry: str, key: str | None, message: str) -> None:
    text = CONFIG + "\n[[survey_campaigns]]\n" + entry + "\n"
    lines = text.splitlines()
    header = len(lines) - lines[::-1].index("[[survey_campaigns]]")  # the last entry's header line
    line = header + next((i for i, ln in enumerate(lines[header:], start=1) if ln.startswith(f"{key} ")), 0) \
        if key else header
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert message in str(caught.value), str(caught.value)
    assert f"line {line}:" in str(caught.value), (line, str(caught.value))
    if key != "survey":  # the unknown-key refusal is the generic one of every table
        assert "[[survey_campaigns]] entry " in str(caught.value)


def test_an_integer_survey_id_is_the_id_partners_send() -> None:
    config = parse_config(CONFIG.replace('survey_id = "1001"', "survey_id = 1001"))
    assert config.campaign_for("surveys", "1001").campaign_id == "survey-1001"


def test_the_pipeline_refuses_a_bad_mapping_before_deriving(net: Harness) -> None:
    net.close()
    (net.data_dir / "config.toml").write_text(CONFIG.replace('campaign_id = "uk-surveys"', 'campaign_id = "uk"'),
                                              encoding="utf-8")
    with pytest.raises(PipelineConfigError, match=r"line \d+: \[\[survey_campaigns\]\] entry 3 \(partner "
                                                  r"'surveys'\): campaign_id 'uk' is not an offer"):
        pipeline.run(net.data_dir)
