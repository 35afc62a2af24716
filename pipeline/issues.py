"""postback_issues: every postback that did not record a counting conversion, with a reason support can act on.

Sources:
- refused postbacks (their error code, refined: an unknown click id is told apart as
  an empty id, an unsubstituted macro, a malformed id or an unknown id with the
  nearest known click id; a wrong key as missing, wrong, or another partner's);
- `duplicate` postbacks whose amount, currency or commission contradicts the recorded
  conversion (`conflicting_duplicate`, even when their status step was applied: the
  detail names both values), and those that changed nothing (`duplicate`,
  `status_is_final` when the partner's status is fixed at first insert,
  `status_change_not_allowed`), and `test`;
- the receiver's authentication refusals (`ip_not_allowed`, `signature_required`,
  `invalid_signature`, `signature_expired`), with the sender's address in the detail;
- requests to unknown paths that carry a click id (`wrong_path`);
- recorded conversions that cannot count for a reason outside the partner's status:
  `fx_missing`, `click_unknown`, `click_expired`, `no_offer_terms`.
"""

from __future__ import annotations

import re

import polars as pl

from pipeline.conversions import PairHistory, pair_history
from pipeline.nearest import NearestClickIndex, index_for
from pipeline.schemas import polars_schema
from receiver.params import looks_like_macro

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

DETAILS = {
    "empty_click_id": "No click id was sent (click_id, cid, clickid or clickId is missing or empty).",
    "unsubstituted_macro": "The click id is a macro the partner's tracker did not fill in; fix the macro name "
                           "in the postback URL.",
    "malformed_click_id": "The click id is not one we generate (a UUID); check which value the tracker passes.",
    "unknown_click_id": "No click with this id: wrong, stale or never captured at click time.",
    "click_expired": "The click had expired when the postback arrived.",
    "key_of_another_partner": "The api key belongs to another partner than the one owning the click's offer.",
    "wrong_api_key": "The api key belongs to no partner (wrong, or regenerated).",
    "missing_api_key": "No api key was sent (api_key parameter, X-API-Key header, or in the path).",
    "campaign_mismatch": "campaign_id is not the campaign of this click.",
    "missing_campaign_id": "ClickWall postbacks must carry campaign_id.",
    "wrong_path": "Sent to a path we do not serve; postbacks go to /api/postback (or the partner's own route).",
    "duplicate": "The same (click_id, transaction_id) was already recorded; send a distinct transaction_id "
                 "for a separate conversion.",
    "status_is_final": "This partner's status is final at first insert; the later status was ignored.",
    "status_change_not_allowed": "Only pending -> approved/rejected and approved -> rejected are applied.",
    "conflicting_duplicate": "The same (click_id, transaction_id) was already recorded with other values; "
                             "the recorded values are kept.",
    "ip_not_allowed": "Refused: the sender's address is not in the partner's allowed_ips (config.toml). If the "
                      "address below is the partner's, add it; otherwise the request is not from them.",
    "signature_required": "Refused: this partner has a signing_secret and the postback carried no X-Signature "
                          "and X-Timestamp headers; the partner must sign its postbacks.",
    "invalid_signature": "Refused: X-Signature is not the HMAC-SHA256 of this request (or X-Timestamp is not unix "
                         "seconds): the partner signs with a wrong or old signing_secret, or the request was "
                         "changed after signing. Send the partner its current secret.",
    "signature_expired": "Refused: a correctly signed postback whose X-Timestamp is outside the allowed window: "
                         "the sender's clock is off, or the request was replayed late. Ask the partner to check "
                         "its clock and resend.",
    "test_postback": "A test postback: answered, never recorded.",
    "fx_missing": "Recorded, but no fx rate for its currency on or before its day: it does not count until "
                  "fx_rates.csv has one.",
    "click_unknown": "Recorded, but its click is not in the log: it does not count.",
    "no_offer_terms": "Recorded, but no revenue share is known for its offer: it does not count.",
}
ERROR_REASONS = {
    "click_id_required": "empty_click_id",
    "api_key_required": "missing_api_key",
    "campaign_id_required": "missing_campaign_id",
    "campaign_mismatch": "campaign_mismatch",
    "click_expired": "click_expired",
    # the receiver's authentication refusals map one to one
    "ip_not_allowed": "ip_not_allowed",
    "signature_required": "signature_required",
    "invalid_signature": "invalid_signature",
    "signature_expired": "signature_expired",
}
AUTH_REASONS = ("ip_not_allowed", "signature_required", "invalid_signature", "signature_expired")
COUNTING_REASONS = ("fx_missing", "click_unknown", "click_expired", "no_offer_terms")


def classify_click_id(click_id: str | None, index: NearestClickIndex) -> tuple[str, str | None]:
    """(reason, nearest known click id) for a click id we did not find."""
    if click_id is None or not click_id.strip():
        return "empty_click_id", None
    if looks_like_macro(click_id):
        return "unsubstituted_macro", None
    nearest = index.find(click_id)
    return ("unknown_click_id" if UUID_RE.match(click_id.strip()) else "malformed_click_id"), nearest


def duplicate_reasons(postbacks: pl.DataFrame, history: PairHistory | None = None) -> pl.DataFrame:
    """(event_id, reason, own_detail) of every `duplicate` postback listed as an issue.

    A conflicting one is listed whatever its status step did (the conflict is what
    finance must see); the others only when they changed nothing.
    """
    history = history or pair_history(postbacks)
    conflicts = history.conflicts.select("event_id", pl.col("conflict_detail").alias("own_detail"))
    steps = history.steps.filter(~pl.col("is_recorded")).join(conflicts, on="event_id", how="left")
    applied_note = pl.when(pl.col("applied")).then(
        pl.concat_str(pl.lit(" Its status step ("), pl.col("status"), pl.lit(") was applied.")))
    return steps.filter(~pl.col("applied") | pl.col("own_detail").is_not_null()).select(
        "event_id",
        pl.when(pl.col("own_detail").is_not_null()).then(pl.lit("conflicting_duplicate"))
        .when(pl.col("rank") == pl.col("before")).then(pl.lit("duplicate"))
        .when(~pl.col("updates_on")).then(pl.lit("status_is_final"))
        .otherwise(pl.lit("status_change_not_allowed")).alias("reason"),
        pl.concat_str(pl.col("own_detail"), applied_note.otherwise(pl.lit(""))).alias("own_detail"))


def sender_text() -> pl.Expr:
    """' Sent from <remote_addr> (X-Forwarded-For: ...).': what support checks against the partner's list."""
    forwarded = pl.when(pl.col("forwarded_for").is_not_null()).then(
        pl.concat_str(pl.lit(" (X-Forwarded-For: "), pl.col("forwarded_for"), pl.lit(")"))).otherwise(pl.lit(""))
    return pl.concat_str(pl.lit("Sent from "), pl.col("remote_addr").fill_null("an unknown address"),
                         forwarded, pl.lit("."))


def build_issues(events: pl.DataFrame, postbacks: pl.DataFrame, clicks: pl.DataFrame,
                 conversions: pl.DataFrame, history: PairHistory | None = None) -> pl.DataFrame:
    schema = polars_schema("postback_issues")
    base_cols = [c for c in schema if c not in ("reason", "nearest_click_id", "detail", "kind", "path")]

    steps = duplicate_reasons(postbacks, history)
    refused = postbacks.filter(~pl.col("result").is_in(["recorded", "duplicate"]))
    not_found = refused.filter(pl.col("error") == "click_not_found")
    nearest_rows: list[tuple[str, str, str | None]] = []
    if not not_found.is_empty():
        # classify each distinct sent id once, against an index of only the clicks it can reach
        sent = not_found["click_id"].unique().to_list()
        index = index_for(clicks["click_id"], [s for s in sent if s and s.strip() and not looks_like_macro(s)])
        verdicts = {s: classify_click_id(s, index) for s in sent}
        for event_id, click_id in not_found.select("event_id", "click_id").iter_rows():
            reason, nearest = verdicts[click_id]
            nearest_rows.append((event_id, reason, nearest))
    nearest = pl.DataFrame(nearest_rows, schema={"event_id": pl.String, "nf_reason": pl.String,
                                                  "nearest_click_id": pl.String}, orient="row")
    err = pl.col("error")
    refused = refused.join(nearest, on="event_id", how="left").with_columns(
        pl.when(pl.col("result") == "test").then(pl.lit("test_postback"))
        .when(err == "click_not_found").then(pl.col("nf_reason"))
        .when((err == "invalid_api_key") & pl.col("key_partner_id").is_not_null())
        .then(pl.lit("key_of_another_partner"))
        .when(err == "invalid_api_key").then(pl.lit("wrong_api_key"))
        .otherwise(err.replace_strict(ERROR_REASONS, default=err, return_dtype=pl.String))
        .fill_null(pl.col("result")).alias("reason"))
    dupes = postbacks.join(steps, on="event_id", how="inner").with_columns(
        pl.lit(None, dtype=pl.String).alias("nearest_click_id"))
    refused = refused.with_columns(pl.lit(None, dtype=pl.String).alias("own_detail"))
    counting = conversions.filter(pl.col("not_counted_reason").is_in(COUNTING_REASONS)).select(
        "event_id", pl.col("not_counted_reason").alias("reason"))
    recorded = postbacks.join(counting, on="event_id", how="inner").with_columns(
        pl.lit(None, dtype=pl.String).alias("nearest_click_id"), pl.lit(None, dtype=pl.String).alias("own_detail"))
    from_postbacks = pl.concat([
        f.select(*base_cols, "reason", "nearest_click_id", "own_detail") for f in (refused, dupes, recorded)
    ]).join(events.select("event_id", "kind", "path", "remote_addr", "forwarded_for"), on="event_id", how="left")
    from_postbacks = from_postbacks.with_columns(
        pl.when(pl.col("reason").is_in(AUTH_REASONS)).then(sender_text()).otherwise(pl.col("own_detail"))
        .alias("own_detail"))

    # A postback to a wrong path names no partner, but its click id, when it is ours, does:
    # support sees whose integration to fix.
    click_partner = clicks.select("click_id", pl.col("partner_id").alias("click_partner_id"))
    unrouted = events.filter((pl.col("kind") == "unrouted") & pl.col("click_id").is_not_null()).join(
        click_partner, on="click_id", how="left").with_columns(
        pl.coalesce("partner_id", "key_partner_id", "click_partner_id").alias("partner_id"),
        pl.coalesce("result", "error").alias("result"),
        pl.lit("wrong_path").alias("reason"),
        pl.lit(None, dtype=pl.String).alias("nearest_click_id"),
    )
    unrouted = unrouted.with_columns(pl.lit(None, dtype=pl.String).alias("own_detail"))
    rows = pl.concat([from_postbacks.select(*list(schema)[:-1], "own_detail"),
                      unrouted.select(*list(schema)[:-1], "own_detail")], how="vertical_relaxed")
    detail = pl.col("reason").replace_strict(DETAILS, default=None, return_dtype=pl.String)
    generic = pl.coalesce(detail, pl.concat_str(pl.lit("Refused with "), pl.col("reason"), pl.lit(".")))
    rows = rows.with_columns(
        pl.when(pl.col("reason") == "conflicting_duplicate").then(pl.col("own_detail"))
        .when(pl.col("own_detail").is_not_null()).then(pl.concat_str(generic, pl.lit(" "), pl.col("own_detail")))
        .otherwise(generic).alias("detail")).drop("own_detail")
    rows = rows.with_columns(
        pl.when(pl.col("nearest_click_id").is_not_null())
        .then(pl.concat_str(pl.col("detail"), pl.lit(" Did you mean "), pl.col("nearest_click_id"), pl.lit("?")))
        .otherwise(pl.col("detail")).alias("detail"))
    return rows.select(list(schema)).sort("seq").cast(schema)  # type: ignore[arg-type]


# What support tells a partner, per reason: the troubleshooting table of the partner guide
# (seed 003) is the model: symptom, likely cause, fix.
FIX_GUIDE: tuple[tuple[str, str, str, str], ...] = (
    ("empty_click_id", "Postback answers click_id_required",
     "The click_id / cid parameter is missing or empty in the postback",
     "Put the click id macro of your platform in the postback URL: ...&click_id={click_id}"),
    ("unsubstituted_macro", "Postback answers click_not_found; the click id reads like {click_id}",
     "The tracker sent its macro text instead of filling it in (wrong macro name for that platform)",
     "Use the macro your platform documents for the click id we passed (e.g. {clickid}, {sub1}); "
     "send a test postback and check the click id is a UUID"),
    ("malformed_click_id", "Postback answers click_not_found; the id is not a UUID",
     "The id was cut or altered on the way (truncated field, URL-encoding, another parameter's value)",
     "Store the click_id from our redirect unchanged and send it back as is; nearest_click_id shows "
     "the click it most likely was"),
    ("unknown_click_id", "Postback answers click_not_found",
     "The click_id is wrong, stale, or was never captured on your side at the moment of the click",
     "Capture click_id from the landing page URL at the click and carry it to the order; "
     "nearest_click_id shows a close match when there is one"),
    ("click_expired", "Postback answers click_expired",
     "The conversion came after the offer's click lifetime (click_ttl_hours)",
     "Send postbacks within the click lifetime, or ask us to extend it for this offer"),
    ("missing_api_key", "Postback answers api_key_required",
     "No api_key parameter (or X-API-Key header) was sent",
     "Add your key from Settings: ...&api_key=YOUR_KEY, or the X-API-Key header"),
    ("wrong_api_key", "Postback answers invalid_api_key",
     "The key is wrong or was regenerated (the old one stops working at once)",
     "Copy the current key from Settings into the postback URL"),
    ("key_of_another_partner", "Postback answers invalid_api_key",
     "The key belongs to another partner than the one owning the click's offer",
     "Use the key of the account that owns this offer"),
    ("campaign_mismatch", "ClickWall postback answers campaign_mismatch",
     "campaign_id is not the campaign this click was made for",
     "Use the postback URL of this campaign exactly as the dashboard gives it"),
    ("missing_campaign_id", "ClickWall postback answers campaign_id_required",
     "The postback has no campaign_id", "Add campaign_id exactly as the dashboard gives it"),
    ("wrong_path", "Postback answers 404 not_found (or 200 somewhere else) and no conversion appears",
     "The postback goes to a path we do not serve", "Send it to /api/postback (see the endpoints table)"),
    ("duplicate", "Postback answers duplicate; a second conversion from the same click does not appear",
     "The same (click_id, transaction_id) pair was sent again: it is deduplicated",
     "For a separate conversion (an upsell), send a distinct transaction_id"),
    ("conflicting_duplicate", "A repeated postback carries another amount, currency or commission",
     "The transaction id was reused for a different sale, or the amount was corrected",
     "Use a new transaction_id per sale; corrections go through finance, not a re-post"),
    ("status_is_final", "Conversion stays pending (or rejected) after a later postback",
     "Status is fixed at first insert for this partner (status_updates = false)",
     "Send the postback once the status is final, or ask us to enable status updates"),
    ("status_change_not_allowed", "A later status was ignored",
     "Only pending -> approved/rejected and approved -> rejected are applied",
     "Send statuses in their real order; a rejected conversion cannot be approved again"),
    ("test_postback", "Postback answers test", "status=test is a connectivity test, never counted",
     "Nothing to fix: send real conversions without status=test"),
    ("fx_missing", "Conversion shows but does not count toward earnings",
     "We have no exchange rate for its currency on its day",
     "Internal: add the currency's rate to fx_rates.csv and re-run the pipeline"),
    ("click_unknown", "Conversion recorded for a click the warehouse does not know",
     "The click record is missing from the log (should not happen)", "Internal: investigate the log"),
    ("no_offer_terms", "Conversion recorded but no payout can be computed",
     "The click carries no revenue share and the postback sent no commission",
     "Internal: set the offer's revenue_share"),
    ("ip_not_allowed", "Postback answers ip_not_allowed",
     "It came from an address outside the partner's allowed_ips",
     "Send from your registered servers, or tell us the new addresses"),
    ("signature_required", "Postback answers signature_required",
     "This partner must sign postbacks (X-Signature, X-Timestamp)", "Sign every postback as documented"),
    ("invalid_signature", "Postback answers invalid_signature",
     "Wrong or old signing secret, or the request changed after signing",
     "Sign the exact bytes sent with the current secret"),
    ("signature_expired", "Postback answers signature_expired",
     "X-Timestamp is more than 300 s from our clock", "Sync the sender's clock (NTP); never replay old postbacks"),
)


def fix_guide() -> pl.DataFrame:
    """reason, symptom, likely_cause, fix: what support tells a partner about each issue reason."""
    return pl.DataFrame(list(FIX_GUIDE), schema=["reason", "symptom", "likely_cause", "fix"], orient="row")
