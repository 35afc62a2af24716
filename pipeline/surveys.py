"""Survey ids to campaigns: each conversion's partner survey id, mapped to one of our offers.

A partner (seed 001's upward partners, a survey wall) names what the user completed by its
own `survey_id` or `offer_id`. The conversion keeps that id as sent (`survey_id`: a profile's
survey_id field, else the postback's `survey_id` parameter, else a profile's offer_id field,
else the `offer_id` parameter; a parameter sent twice gives its first value, as the receiver
reads any field) and carries the campaign it maps to with the partner's [[survey_campaigns]] of
the config *at this run* (`Config.campaign_for`): its exact id, else the first pattern that
matches, else its default. Like a profile's statuses, the mapping is never staged: fixing
config.toml and running the pipeline again corrects history.

`campaign_match` says how: `exact`, `pattern`, `default`, or `unmapped` (a partner that maps
survey ids sent one none of its entries maps: the conversion is kept and counted as any other,
`campaign_id` is null, and postback_issues lists it as `unmapped_survey`). A partner without
[[survey_campaigns]] entries maps nothing: its conversions keep their survey id with a null
campaign and match, and are no issue.
"""

from __future__ import annotations

import json

import polars as pl

from receiver.contract.config import Config

UNMAPPED = "unmapped"
# The survey id's sources, first present wins: (postbacks column, or custom_data key).
FIELD_SOURCES = ("survey_id", "sent_offer_id")  # a profile's fields
PARAM_SOURCES = ("survey_id", "offer_id")  # seed 001's parameters, kept in custom_data


def _param(name: str) -> pl.Expr:
    """custom_data[name] as text: a repeated parameter (a JSON list) gives its first value."""
    value = pl.col("custom_data").str.json_path_match(f"$.{name}")
    is_list = value.str.starts_with("[")
    first = pl.when(is_list).then(value).str.json_path_match("$[0]")  # parses the lists only: null is free
    return pl.when(is_list).then(first).otherwise(value).replace("", None).alias(name)


def with_survey_ids(postbacks: pl.DataFrame) -> pl.DataFrame:
    """`postbacks` with `survey_id`: the survey id each sent (see the module docstring); an empty
    value is none. Only the custom_data that names one of the parameters is parsed: most name
    none, and parsing every row's JSON would cost about a second per two million postbacks."""
    mentions = postbacks.select(pl.any_horizontal(
        pl.col("custom_data").str.contains(f'"{name}"', literal=True) for name in PARAM_SOURCES
    ).fill_null(False))[:, 0]
    rows = mentions.arg_true()
    sent = postbacks[rows].select(*(_param(name) for name in PARAM_SOURCES))
    survey_param, offer_param = (
        pl.repeat(None, postbacks.height, dtype=pl.String, eager=True).scatter(rows, sent[name])
        for name in PARAM_SOURCES)
    survey, offer = (pl.col(name).replace("", None) for name in FIELD_SOURCES)
    return postbacks.with_columns(pl.coalesce(survey, pl.lit(survey_param), offer, pl.lit(offer_param))
                                  .alias("survey_id"))


def with_campaigns(conversions: pl.DataFrame, config: Config | None) -> pl.DataFrame:
    """`conversions` (with partner_id and survey_id) with campaign_id and campaign_match."""
    pairs = conversions.filter(pl.col("survey_id").is_not_null()).select("partner_id", "survey_id").unique()
    rows = []
    for partner_id, survey_id in pairs.iter_rows():
        if config is None or not config.survey_entries(partner_id):
            continue  # this partner maps no survey ids: nothing to map, nothing unmapped
        entry = config.campaign_for(partner_id, survey_id)
        rows.append((partner_id, survey_id, entry.campaign_id if entry else None,
                     entry.match if entry else UNMAPPED))
    mapped = pl.DataFrame(rows, schema={"partner_id": pl.String, "survey_id": pl.String,
                                        "campaign_id": pl.String, "campaign_match": pl.String}, orient="row")
    return conversions.join(mapped, on=["partner_id", "survey_id"], how="left")


def unmapped_surveys(conversions: pl.DataFrame, config: Config | None) -> pl.DataFrame:
    """(event_id, unmapped_detail) of every conversion whose survey id its partner's
    [[survey_campaigns]] do not map; the detail gives the config lines that would map it."""
    unmapped = conversions.filter(pl.col("campaign_match") == UNMAPPED)
    texts = {key: unmapped_text(*key, config) for key in
             unmapped.select("partner_id", "survey_id").unique().iter_rows()}
    details = [texts[key] for key in unmapped.select("partner_id", "survey_id").iter_rows()]
    return unmapped.select("event_id").with_columns(pl.Series("unmapped_detail", details, dtype=pl.String))


def unmapped_text(partner_id: str, survey_id: str, config: Config | None) -> str:
    entries = config.survey_entries(partner_id) if config is not None else []
    name = config.path.name if config is not None and config.path is not None else "config.toml"
    lines = [str(entry.line) for entry in entries if entry.line]
    where = f"{name} (its entries are at line{'s' if len(lines) > 1 else ''} {', '.join(lines)})" if lines else name
    offers = [o.id for o in config.offers.values() if o.partner == partner_id] if config is not None else []
    campaign = offers[0] if len(offers) == 1 else "<one of: " + ", ".join(offers) + ">" if offers else "<offer id>"
    return (f"Survey id {survey_id!r} of partner {partner_id!r} maps to no campaign: to map it, add to {where}: "
            f"[[survey_campaigns]] partner = {_toml(partner_id)}, survey_id = {_toml(survey_id)}, "
            f"campaign_id = {_toml(campaign)} (or a pattern, or default = true for every other id) and run the "
            "pipeline again: history is corrected.")


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)
