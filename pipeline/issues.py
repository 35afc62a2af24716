"""postback_issues: every postback that did not record a counting conversion, with a reason support can act on.

Sources:
- refused postbacks: every code the receiver answers maps to a reason (`reasons_for_code`),
  refined where what was sent tells more: an unknown click id is told apart as an
  unsubstituted macro, a malformed id or a well-formed id we never issued, with the
  nearest known click id; a wrong key as wrong or another partner's. A code this
  version does not know stays its own reason;
- `duplicate` postbacks whose amount, currency or commission contradicts the recorded
  conversion (`conflicting_duplicate`, even when their status step was applied: the
  detail names both values), and those that changed nothing (`duplicate`,
  `status_is_final` when the partner's status is fixed at first insert,
  `status_change_not_allowed`), and `test`;
- the receiver's authentication refusals (`ip_not_allowed`, `signature_required`,
  `invalid_signature`, `signature_expired`), with the sender's address in the detail;
- requests to unknown paths that carry a click id (`wrong_path`);
- recorded conversions that cannot count for a reason outside the partner's status:
  `fx_missing`, `click_unknown`, `click_expired`, `no_offer_terms`;
- every recorded or duplicate postback whose status value the partner's mapping does not
  know (`unknown_status`): a profile partner's value its [partners.statuses] lacks (never
  counted), or a seed dialect's value outside the seed vocabulary (counted as rejected, seed
  003). The detail names the value and the config.toml line that would map it. It takes the
  place of a duplicate's `duplicate`, `status_is_final` or `status_change_not_allowed`; a
  conflicting duplicate and a counting reason keep theirs;
- recorded conversions whose survey id the partner's [[survey_campaigns]] map to no campaign
  (`unmapped_survey`, pipeline.surveys): kept and counted as any other; the detail gives the
  config lines that would map it; a row of its own (a postback has one row per issue).
"""

from __future__ import annotations

import polars as pl

from pipeline.conversions import PairHistory, pair_history
from pipeline.nearest import NearestClickIndex, index_for
from pipeline.schemas import polars_schema
from pipeline.sent_issues import (
    AMOUNT_NOT_RECOGNISED,
    REPEATED_PARAMETER,
    UNSUBSTITUTED_MACRO,
    amounts_not_recognised,
    partner_lines,
    repeated_parameters,
    unfilled_macros,
)
from pipeline.surveys import unmapped_surveys
from receiver.contract.codes import HTTP_STATUS
from receiver.contract.config import Config
from receiver.contract.params import STATUS_MAP, click_id_shape, looks_like_macro
from receiver.contract.profiles import PROFILE_DIALECT

# Reasons a click id we did not find is told apart into, by its shape (receiver.contract.params.click_id_shape,
# which also words the receiver's click_not_found message).
CLICK_ID_REASONS = {
    "empty": "empty_click_id",
    "macro": "unsubstituted_macro",
    "malformed": "malformed_click_id",
    "uuid": "unknown_click_id",
}
# Two codes the receiver answers are refined by what was sent: the click id's shape, and whose key it is.
REFINED_CODES: dict[str, tuple[str, ...]] = {
    "click_not_found": ("unsubstituted_macro", "malformed_click_id", "unknown_click_id"),
    "invalid_api_key": ("wrong_api_key", "key_of_another_partner"),
}
# Every other code the receiver answers (receiver.contract.codes.HTTP_STATUS) is one reason. Most keep their
# name; a few are named for what support sees. Click and any-route codes are here too: they have no
# postback_issues row of their own (but for a postback route's 405, 413, 500, 503), yet support looks
# them up in the fix guide all the same.
ERROR_REASONS = {
    # postbacks
    "click_id_required": "empty_click_id",
    "api_key_required": "missing_api_key",
    "campaign_id_required": "missing_campaign_id",
    "campaign_mismatch": "campaign_mismatch",
    "click_expired": "click_expired",
    "reversal_original_not_found": "reversal_original_not_found",
    "ip_not_allowed": "ip_not_allowed",
    "signature_required": "signature_required",
    "invalid_signature": "invalid_signature",
    "signature_expired": "signature_expired",
    "unsubstituted_macro": UNSUBSTITUTED_MACRO,
    "invalid_amount": "invalid_amount",
    "invalid_commission": "invalid_commission",
    "invalid_currency": "invalid_currency",
    "invalid_body": "invalid_body",
    "unsupported_content_encoding": "unsupported_content_encoding",
    # clicks
    "link_not_found": "link_not_found",
    "token_required": "token_required",
    "invalid_token": "invalid_token",
    "product_not_found": "product_not_found",
    "invalid_task_url": "invalid_task_url",
    # any route
    "bad_request": "bad_request",
    "not_found": "wrong_path",
    "method_not_allowed": "method_not_allowed",
    "body_too_large": "body_too_large",
    # refused by the HTTP server before any route (records of kind http_error)
    "invalid_request_line": "invalid_request_line",
    "invalid_header": "invalid_header",
    "invalid_content_length": "invalid_content_length",
    "invalid_chunked_body": "invalid_chunked_body",
    "headers_too_large": "headers_too_large",
    "transfer_encoding_not_supported": "transfer_encoding_not_supported",
    "internal_error": "internal_error",
    "log_unavailable": "log_unavailable",
    "overloaded": "overloaded",
}
AUTH_REASONS = ("ip_not_allowed", "signature_required", "invalid_signature", "signature_expired")
COUNTING_REASONS = ("fx_missing", "click_unknown", "click_expired", "no_offer_terms")
DUPLICATE_REASONS = ("duplicate", "conflicting_duplicate", "status_is_final", "status_change_not_allowed")
UNKNOWN_STATUS = "unknown_status"
UNMAPPED_SURVEY = "unmapped_survey"
# The reasons an unknown status takes the place of: they say only that the status did not move.
UNKNOWN_REPLACES = ("duplicate", "status_is_final", "status_change_not_allowed")
# A postback record with neither a result nor an error (postbacks.result says "unanswered").
UNANSWERED = "unanswered"
# The records postback_issues lists, and the columns of theirs it reads beyond its own.
ISSUE_KINDS = ("postback", "unrouted", "http_error")
ISSUE_EVENT_COLUMNS = ("repeated_params", "macro_field", "macro_param", "macro", "server_reason")


def reasons_for_code(code: str) -> tuple[str, ...]:
    """The postback_issues reason(s) a code the receiver answers becomes; ValueError for a code it never answers."""
    if code in REFINED_CODES:
        return REFINED_CODES[code]
    if code in ERROR_REASONS:
        return (ERROR_REASONS[code],)
    raise ValueError(f"{code!r} is not a code the receiver answers (receiver.contract.codes.HTTP_STATUS)")


# Every reason build_issues gives, and every reason a receiver code stands for: each has a DETAILS
# text and a FIX_GUIDE row (tests/pipeline/test_troubleshooting_advice.py holds them to it).
REASONS: tuple[str, ...] = tuple(dict.fromkeys([
    *CLICK_ID_REASONS.values(),
    *(reason for code in HTTP_STATUS for reason in reasons_for_code(code)),
    *DUPLICATE_REASONS, *COUNTING_REASONS, UNKNOWN_STATUS, UNMAPPED_SURVEY, "test_postback", UNANSWERED,
    AMOUNT_NOT_RECOGNISED, REPEATED_PARAMETER,
]))

DETAILS = {
    "empty_click_id": "No click id was sent (click_id, cid, clickid or clickId is missing or empty).",
    "unsubstituted_macro": "The click id is a macro the partner's tracker did not fill in; fix the macro name "
                           "in the postback URL.",
    "malformed_click_id": "The click id is not one we generate (a UUID): it was cut or altered on the way, or "
                          "another parameter's value was sent; check which value the tracker passes.",
    "unknown_click_id": "A well-formed click id (a UUID) we never issued: the click was not made through our "
                        "tracking link, or the id comes from another network or environment; the partner must "
                        "send the click_id our redirect gave.",
    "click_expired": "The click had expired when the postback arrived.",
    "reversal_original_not_found": "Refused: a reversal (a negative amount) names a transaction this click has "
                                   "no conversion for; the platform retries it, and it applies once the "
                                   "conversion is recorded.",
    AMOUNT_NOT_RECOGNISED: "Booked without an amount (0), while it sent a money-looking parameter the "
                           "partner's parameters do not read.",
    REPEATED_PARAMETER: "A parameter was sent more than once with different values; the first was used and "
                        "every value is kept in custom_data.",
    UNKNOWN_STATUS: "A status value the partner's mapping does not know: a profile partner's conversion with it "
                    "does not count; a seed dialect counts it as rejected (seed 003).",
    UNMAPPED_SURVEY: "Recorded with a survey id (survey_id or offer_id) that the partner's [[survey_campaigns]] "
                     "map to no campaign: the conversion is kept and counts as any other, with no campaign_id.",
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
                          "and X-Timestamp headers (or, for a profile with a platform's signature_scheme, not that "
                          "platform's signature); the partner must sign its postbacks.",
    "invalid_signature": "Refused: X-Signature is not the HMAC-SHA256 of this request (or X-Timestamp is not unix "
                         "seconds; for a profile with a platform's signature_scheme: that platform's signature "
                         "does not match): the partner signs with a wrong or old signing_secret, or the request "
                         "was changed after signing. Send the partner its current secret.",
    "signature_expired": "Refused: a correctly signed postback whose X-Timestamp is outside the allowed window: "
                         "the sender's clock is off, or the request was replayed late. Ask the partner to check "
                         "its clock and resend.",
    "invalid_amount": "Refused: amount (or payout) is not a plain number from 0 to 1e12 with at most 8 decimals "
                      "(an unfilled macro, a currency sign or a decimal comma); see the query or body sent.",
    "invalid_commission": "Refused: commission is not a plain number from 0 to 1e12 with at most 8 decimals "
                          "(an unfilled macro, a currency sign or a decimal comma); see the query or body sent.",
    "invalid_currency": "Refused: currency is not a 3-letter ISO 4217 code (USD, EUR...).",
    "invalid_body": "Refused: the JSON body does not parse, is not an object of parameters, or is nested too "
                    "deep; the raw body is kept in the log.",
    "unsupported_content_encoding": "Refused: the body's Content-Encoding is not gzip or deflate (br, zstd...); "
                                    "the raw body is kept in the log.",
    "invalid_request_line": "Refused by the HTTP server before any route: the request line is not valid HTTP "
                            "(raw spaces, control characters or non-ASCII bytes in the URL); the escaped "
                            "request line is in the log (fields.request_line).",
    "invalid_header": "Refused by the HTTP server before any route: a header line is not valid HTTP (a bare "
                      "CR or LF, a NUL, a space in a header name); the escaped head is in the log.",
    "invalid_content_length": "Refused by the HTTP server before any route: Content-Length is not a "
                              "number of bytes.",
    "invalid_chunked_body": "Refused by the HTTP server before any route: the chunked body is malformed "
                            "(a bad chunk size or a chunk not ended by CRLF).",
    "headers_too_large": "Refused by the HTTP server before any route: the request line and headers are over "
                         "64 KiB (usually a huge query string); the first 64 KiB are in the log.",
    "transfer_encoding_not_supported": "Refused by the HTTP server before any route: a Transfer-Encoding other "
                                       "than chunked.",
    "method_not_allowed": "Refused: sent with a method this route does not take (postbacks take GET or POST).",
    "body_too_large": "Refused: the request body is over the receiver's size limit (1 MiB by default).",
    "bad_request": "Refused: the request could not be read (malformed HTTP, headers or encoding).",
    "internal_error": "Failed on our side (an unexpected error, with its traceback in the receiver's output); "
                      "the partner can resend, a repeat is never counted twice.",
    "log_unavailable": "Refused: the receiver could not make the request's record durable (the log's disk); "
                       "the partner should resend.",
    "overloaded": "Refused: the receiver was at capacity (load shedding); the partner should resend after a "
                  "second.",
    "link_not_found": "A tracking link whose slug is not in config.toml.",
    "token_required": "An earn-app click without an Authorization: Bearer token.",
    "invalid_token": "An earn-app click whose bearer token belongs to no user.",
    "product_not_found": "An earn-app click for a product that is not in config.toml.",
    "invalid_task_url": "An earn-app click whose taskUrl is not under the product's task URL.",
    "test_postback": "A test postback: answered, never recorded.",
    "fx_missing": "Recorded, but no fx rate for its currency on or before its day: it does not count until "
                  "fx_rates.csv has one.",
    "click_unknown": "Recorded, but its click is not in the log: it does not count.",
    "no_offer_terms": "Recorded, but no revenue share is known for its offer: it does not count.",
    UNANSWERED: "Logged with neither a result nor an error code: the receiver did not say what it did.",
}


def click_id_issue() -> pl.Expr:
    """postback_issues rows about the click id: missing, unknown, malformed, or an unfilled macro
    (an unsubstituted_macro row about another field, e.g. a transaction id, is not one)."""
    macro_id = pl.col("click_id").map_elements(looks_like_macro, return_dtype=pl.Boolean, skip_nulls=True)
    return (pl.col("reason").is_in([r for r in CLICK_ID_REASONS.values() if r != UNSUBSTITUTED_MACRO])
            | ((pl.col("reason") == UNSUBSTITUTED_MACRO) & macro_id.fill_null(False)))


def classify_click_id(click_id: str | None, index: NearestClickIndex) -> tuple[str, str | None]:
    """(reason, nearest known click id) for a click id we did not find."""
    shape = click_id_shape(click_id)
    if shape in ("empty", "macro"):
        return CLICK_ID_REASONS[shape], None
    return CLICK_ID_REASONS[shape], index.find(click_id)  # type: ignore[arg-type]


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


def unknown_statuses(postbacks: pl.DataFrame, config: Config | None) -> pl.DataFrame:
    """(event_id, unknown_detail) of every recorded or duplicate postback whose status value the
    partner's mapping does not know: a profile's `unknown`, or a seed dialect's value outside the
    seed vocabulary (which counts as rejected)."""
    raw = pl.col("status_raw").str.strip_chars().str.to_lowercase()
    profile = (pl.col("dialect") == PROFILE_DIALECT).fill_null(False)
    unknown = postbacks.filter(
        pl.col("result").is_in(["recorded", "duplicate"])
        & pl.when(profile).then(pl.col("status") == "unknown")
        .otherwise(raw.is_not_null() & (raw != "") & ~raw.is_in(list(STATUS_MAP))).fill_null(False)
    ).with_columns(pl.coalesce("key_partner_id", "partner_id").alias("_partner"), profile.alias("_profile"))
    lines = partner_lines(config, ("statuses",))
    texts = {key: _unknown_text(*key, config, lines)
             for key in unknown.select("_partner", "status_raw", "_profile").unique().iter_rows()}
    details = [texts[key] for key in unknown.select("_partner", "status_raw", "_profile").iter_rows()]
    return unknown.select("event_id").with_columns(pl.Series("unknown_detail", details, dtype=pl.String))


def _unknown_text(partner_id: str | None, raw: str, profile: bool, config: Config | None,
                  lines: dict[str, tuple[str, int | None]]) -> str:
    where = lines.get(partner_id or "")
    at = f"{where[0]} line {where[1]}" if where and where[1] else "config.toml"
    partner = config.partners.get(partner_id or "") if config is not None else None
    value = raw.strip().lower()
    if profile:
        preset = f" (preset {partner.profile.preset})" if partner and partner.profile and partner.profile.preset \
            else ""
        return (f"Status {raw!r} is not in partner {partner_id!r}'s [partners.statuses]{preset}: not counted. "
                f"{at}: add \"{value}\" to [partners.statuses] approved = [...] (or pending, or rejected) and "
                "run the pipeline again: history is corrected.")
    return (f"Status {raw!r} is not in the seed vocabulary: counted as rejected (seed 003). To map it, give "
            f"partner {partner_id!r} ({at}) a [partners.statuses] table with \"{value}\" and send its postbacks "
            "to its own /postback/{key} URL.")


MACRO_DETAIL = "A value is a macro the partner's tracker did not fill in: "
MACRO_FIX = (" Fix the macro in the postback URL (use the one the platform documents for that value); a recorded "
             "postback keeps the text as sent.")


def _with_macros(listed: pl.DataFrame, postbacks: pl.DataFrame, events: pl.DataFrame
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`listed` with its unsubstituted_macro rows naming every field that holds a macro, the
    unsubstituted_macro rows of the other postbacks with one).

    A click id refused as click_not_found because it is a macro keeps the detail that says so,
    unless another field holds one too.
    """
    found = unfilled_macros(postbacks, events)
    named = found.group_by("event_id", maintain_order=True).agg(
        pl.col("macro_text").str.join("; ").alias("_macros"),
        (pl.col("field") != "click_id").any().alias("_beyond_click_id"))
    is_macro = pl.col("reason") == UNSUBSTITUTED_MACRO
    name_them = is_macro & pl.col("_macros").is_not_null() & (
        (pl.col("error") != "click_not_found").fill_null(True) | pl.col("_beyond_click_id"))
    listed = listed.join(named, on="event_id", how="left").with_columns(
        pl.when(name_them).then(pl.concat_str(pl.col("_macros"), pl.lit(".")))
        .otherwise(pl.col("own_detail")).alias("own_detail")).drop("_macros", "_beyond_click_id")
    others = named.join(listed.filter(is_macro).select("event_id"), on="event_id", how="anti")
    rows = postbacks.join(others, on="event_id", how="inner").with_columns(
        pl.lit(UNSUBSTITUTED_MACRO).alias("reason"), pl.lit(None, dtype=pl.String).alias("nearest_click_id"),
        pl.concat_str(pl.col("_macros"), pl.lit(".")).alias("own_detail"))
    return listed, rows


def build_issues(events: pl.DataFrame, postbacks: pl.DataFrame, clicks: pl.DataFrame,
                 conversions: pl.DataFrame, history: PairHistory | None = None,
                 config: Config | None = None) -> pl.DataFrame:
    schema = polars_schema("postback_issues")
    base_cols = [c for c in schema if c not in ("reason", "nearest_click_id", "detail", "kind", "path")]

    steps = duplicate_reasons(postbacks, history)
    refused = postbacks.filter(~pl.col("result").is_in(["recorded", "duplicate"]))
    not_found = refused.filter(pl.col("error") == "click_not_found")
    nearest_rows: list[tuple[str, str, str | None]] = []
    if not not_found.is_empty():
        # classify each distinct sent id once, against an index of only the clicks it can reach
        sent = not_found["click_id"].unique().to_list()
        index = index_for(clicks["click_id"], [s for s in sent if click_id_shape(s) in ("malformed", "uuid")])
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
        .fill_null(pl.col("result")).alias("reason"))  # neither error nor result: UNANSWERED
    dupes = postbacks.join(steps, on="event_id", how="inner").with_columns(
        pl.lit(None, dtype=pl.String).alias("nearest_click_id"))
    refused = refused.with_columns(pl.lit(None, dtype=pl.String).alias("own_detail"))
    counting = conversions.filter(pl.col("not_counted_reason").is_in(COUNTING_REASONS)).select(
        "event_id", pl.col("not_counted_reason").alias("reason"))
    recorded = postbacks.join(counting, on="event_id", how="inner").with_columns(
        pl.lit(None, dtype=pl.String).alias("nearest_click_id"), pl.lit(None, dtype=pl.String).alias("own_detail"))
    listed = pl.concat([
        f.select(*base_cols, "reason", "nearest_click_id", "own_detail") for f in (refused, dupes, recorded)
    ])
    # An unknown status takes the place of a reason that says only that the status did not move,
    # and gets a row of its own where there is none; other reasons keep theirs.
    unknown = unknown_statuses(postbacks, config)
    replace = pl.col("unknown_detail").is_not_null() & pl.col("reason").is_in(UNKNOWN_REPLACES)
    listed = listed.join(unknown, on="event_id", how="left").with_columns(
        pl.when(replace).then(pl.lit(UNKNOWN_STATUS)).otherwise(pl.col("reason")).alias("reason"),
        pl.when(replace).then(pl.col("unknown_detail")).otherwise(pl.col("own_detail")).alias("own_detail"),
    ).drop("unknown_detail")
    unknown_rows = postbacks.join(unknown.join(listed.select("event_id"), on="event_id", how="anti"),
                                  on="event_id", how="inner").with_columns(
        pl.lit(UNKNOWN_STATUS).alias("reason"), pl.lit(None, dtype=pl.String).alias("nearest_click_id"),
        pl.col("unknown_detail").alias("own_detail"))
    listed, macro_rows = _with_macros(listed, postbacks, events)
    sent = pl.concat([amounts_not_recognised(postbacks, config), repeated_parameters(postbacks, events)])
    sent_rows = postbacks.join(sent, on="event_id", how="inner").with_columns(
        pl.lit(None, dtype=pl.String).alias("nearest_click_id"))
    # An unmapped survey id is a row of its own (a conversion may be listed for other reasons too).
    unmapped_rows = postbacks.join(unmapped_surveys(conversions, config), on="event_id", how="inner").with_columns(
        pl.lit(UNMAPPED_SURVEY).alias("reason"), pl.lit(None, dtype=pl.String).alias("nearest_click_id"),
        pl.col("unmapped_detail").alias("own_detail"))
    from_postbacks = pl.concat([
        frame.select(*base_cols, "reason", "nearest_click_id", "own_detail")
        for frame in (listed, unknown_rows, macro_rows, sent_rows, unmapped_rows)
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
    # Requests the HTTP server refused before any route: support sees them with their code.
    server_said = pl.concat_str(pl.lit("The server said: "), pl.col("server_reason"), pl.lit("."))
    http_errors = events.filter(pl.col("kind") == "http_error").join(
        click_partner, on="click_id", how="left").with_columns(
        pl.coalesce("partner_id", "key_partner_id", "click_partner_id").alias("partner_id"),
        pl.coalesce("result", "error").alias("result"),
        pl.col("error").replace_strict(ERROR_REASONS, default=pl.col("error"), return_dtype=pl.String)
        .fill_null(pl.lit(UNANSWERED)).alias("reason"),
        pl.lit(None, dtype=pl.String).alias("nearest_click_id"),
        (server_said if "server_reason" in events.columns else pl.lit(None, dtype=pl.String)).alias("own_detail"),
    )
    rows = pl.concat([frame.select(*list(schema)[:-1], "own_detail") for frame in (from_postbacks, unrouted, http_errors)],
                     how="vertical_relaxed")
    detail = pl.col("reason").replace_strict(DETAILS, default=None, return_dtype=pl.String)
    generic = pl.coalesce(detail, pl.concat_str(pl.lit("Refused with "), pl.col("reason"), pl.lit(".")))
    rows = rows.with_columns(
        pl.when(pl.col("reason") == "conflicting_duplicate").then(pl.col("own_detail"))
        .when((pl.col("reason") == UNSUBSTITUTED_MACRO) & pl.col("own_detail").is_not_null())
        .then(pl.concat_str(pl.lit(MACRO_DETAIL), pl.col("own_detail"), pl.lit(MACRO_FIX)))
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
    ("unsubstituted_macro", "Postback answers 400 unsubstituted_macro (a profile's click id, or any amount), or "
     "click_not_found with a click id like {click_id}; or an issue names a transaction id or status like [txid]",
     "The tracker sent its macro text instead of filling it in (a wrong macro name for that platform, in any "
     "syntax: {x}, [x], ##X##, %X%, (x)...)",
     "Use the macro your platform documents for that value (e.g. {clickid}, {sub1}, {payout}); `clickledger "
     "partner check` shows each parameter read; send a test postback and check the values are real"),
    (AMOUNT_NOT_RECOGNISED, "A conversion shows amount 0 although the partner says it paid",
     "The partner sends the amount under a name the receiver does not read (sum, revenue, payout_usd...)",
     "Add the name to the partner's [partners.params] amount = [...] (the detail names the config.toml line), or "
     "ask the partner to send amount; resend or correct the postbacks already booked with 0"),
    (REPEATED_PARAMETER, "A postback carries the same parameter twice with different values",
     "The platform's URL template or form repeats a parameter (e.g. two click_id macros)",
     "Remove the repeat from the postback URL; the first value was used, custom_data keeps them all"),
    ("malformed_click_id", "Postback answers click_not_found; the id is not a UUID",
     "The id was cut or altered on the way (truncated field, URL-encoding, another parameter's value)",
     "Store the click_id from our redirect unchanged and send it back as is; nearest_click_id shows "
     "the click it most likely was"),
    ("unknown_click_id", "Postback answers click_not_found; the id is a well-formed UUID",
     "A click id we never issued: the click was not made through our tracking link, or the id comes from "
     "another network or from a test or staging environment",
     "Send the click_id our redirect gave for this click (capture it from the landing URL at the click), to "
     "the receiver that issued it; nearest_click_id shows a close match of ours when there is one"),
    ("reversal_original_not_found", "A reversal answers 404 reversal_original_not_found",
     "The reversal's reverses parameter (e.g. BitLabs' REF) names a transaction id no recorded conversion of this "
     "click has: it came before the conversion, or names another id",
     "Nothing to do if the conversion comes later: the platform's retry applies it. Otherwise check which "
     "parameter carries the original transaction id ([partners.amounts] reverses)"),
    (UNKNOWN_STATUS, "A conversion shows status unknown (or rejected, for a seed dialect) and does not count",
     "The partner sends a status value its [partners.statuses] mapping does not list (e.g. Keitaro's sale)",
     "Add the value to approved, pending or rejected in the partner's [partners.statuses] (the detail names the "
     "config.toml line) and run the pipeline again: the log keeps the raw status, so history is corrected"),
    (UNMAPPED_SURVEY, "A conversion shows survey_id but no campaign_id (campaign_match unmapped)",
     "The partner sent a survey id (survey_id or offer_id) that none of its [[survey_campaigns]] entries maps: "
     "a new survey, or an id outside the patterns",
     "Add a [[survey_campaigns]] entry with the partner, the survey_id (or a pattern) and our offer as "
     "campaign_id, or default = true for the partner (the detail gives the config.toml line and the entry), "
     "and run the pipeline again: history is corrected"),
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
     "This partner must sign postbacks (X-Signature, X-Timestamp; or its platform's own signature: Tapjoy's "
     "verifier, ironSource's signature, ayeT's X-Ayetstudios-Security-Hash, BitLabs' hash)",
     "Sign every postback as documented; for a platform, set its secret key in the platform's dashboard"),
    ("invalid_signature", "Postback answers invalid_signature",
     "Wrong or old signing secret, or the request changed after signing (a platform: signing_secret is not the "
     "key the platform signs with, or for BitLabs public_url is not the address it calls)",
     "Sign the exact bytes sent with the current secret; for a platform, copy its key into signing_secret"),
    ("signature_expired", "Postback answers signature_expired",
     "X-Timestamp is more than 300 s from our clock", "Sync the sender's clock (NTP); never replay old postbacks"),
    ("invalid_amount", "Postback answers 400 invalid_amount",
     "amount (or payout) is not a plain number from 0 to 1e12 with at most 8 decimals: an unfilled {payout} "
     "macro, a currency sign (12 USD), a decimal comma (1,5) or a negative value",
     "Send the amount as a bare decimal with a dot (12.50) and the currency in its own parameter; "
     "leave it out when there is none (it defaults to 0)"),
    ("invalid_commission", "Postback answers 400 invalid_commission",
     "commission is not a plain number from 0 to 1e12 with at most 8 decimals: an unfilled macro, a "
     "currency sign, a decimal comma or a negative value",
     "Send the commission as a bare decimal with a dot (1.25), or leave it out"),
    ("invalid_currency", "Postback answers 400 invalid_currency",
     "currency is not a 3-letter ISO 4217 code (a symbol such as $, a name such as EURO, or an unfilled macro)",
     "Send the ISO code (USD, EUR, GBP...), or leave currency out to use the offer's currency"),
    ("invalid_body", "Postback (or earn-app click) answers 400 invalid_body",
     "The JSON body does not parse, is not an object of parameters (an array or a bare string), or is "
     "nested more than 64 levels deep",
     "Send a JSON object such as {\"click_id\": \"...\", \"amount\": 5} with Content-Type: application/json, "
     "or put the parameters in the query string or a form body"),
    ("unsupported_content_encoding", "Postback answers 415 unsupported_content_encoding",
     "The body was compressed with a coding we do not decode (br, zstd, compress)",
     "Send the body uncompressed, or gzip or deflate it with the matching Content-Encoding header"),
    ("invalid_request_line", "Request answers 400 invalid_request_line",
     "The URL carries raw spaces, control characters or non-ASCII bytes (an unencoded macro value such as "
     "a name with accents), so the request line is not valid HTTP",
     "Percent-encode parameter values in the URL (é as %C3%A9, a space as %20); fields.request_line in the "
     "log shows the bytes sent"),
    ("invalid_header", "Request answers 400 invalid_header",
     "A header line is not valid HTTP: a bare CR or LF, a NUL byte, or a space in a header name",
     "Fix the header the platform's HTTP client sends (fields.head in the log shows every header line)"),
    ("invalid_content_length", "Request answers 400 invalid_content_length",
     "Content-Length is not a number of bytes (negative, or text)",
     "Let the HTTP client set Content-Length, or send the parameters in the query string"),
    ("invalid_chunked_body", "Request answers 400 invalid_chunked_body",
     "A Transfer-Encoding: chunked body with a bad chunk size or framing",
     "Send the body with a Content-Length instead, or fix the client's chunked encoding"),
    ("headers_too_large", "Request answers 431 headers_too_large",
     "The request line and headers are over 64 KiB, nearly always a query string carrying a whole "
     "payload",
     "Send only the postback's parameters; put large data in a POST body (up to 1 MiB)"),
    ("transfer_encoding_not_supported", "Request answers 501 transfer_encoding_not_supported",
     "Transfer-Encoding names a coding other than chunked (gzip, compress...)",
     "Use Content-Encoding: gzip for a compressed body, with Transfer-Encoding chunked or a Content-Length"),
    ("method_not_allowed", "Postback answers 405 method_not_allowed (the Allow header lists GET, POST)",
     "The request used a method the route does not take (PUT, PATCH, DELETE...)",
     "Send postbacks as GET with the parameters in the query string, or as POST"),
    ("body_too_large", "Request answers 413 body_too_large",
     "The body is over the receiver's limit (1 MiB by default)",
     "Send only the postback's parameters; leave large payloads (files, whole orders) out"),
    ("bad_request", "Request answers 400 bad_request",
     "The request could not be read as HTTP: a malformed header, query string or Content-Length",
     "Compare the request the platform sends with a plain curl of the same URL; URL-encode parameter values"),
    ("internal_error", "Request answers 500 internal_error",
     "An unexpected error on our side (its traceback is in the receiver's output at that time)",
     "Partner: resend, a repeat is never counted twice. Internal: read the traceback and fix the cause"),
    ("log_unavailable", "Request answers 503 log_unavailable",
     "The receiver could not make the request's record durable (disk full, or the log directory unwritable), "
     "so it recorded nothing",
     "Partner: resend, a repeat is never counted twice. Internal: free disk space or fix the log directory"),
    ("overloaded", "Request answers 503 overloaded with Retry-After: 1",
     "The receiver was at capacity: more requests were waiting than max_queue (2 per thread by default)",
     "Partner: resend after a second, with backoff. Internal: if it lasts, serve with more threads or servers"),
    ("link_not_found", "Tracking link answers 404 link_not_found",
     "The slug in /t/{slug} is not a link in config.toml (mistyped, or the link was removed)",
     "Use the tracking link exactly as we gave it; internal: add the link to config.toml"),
    ("token_required", "Earn-app click answers 401 token_required",
     "The click request carried no Authorization: Bearer token",
     "Send the user's token in the Authorization: Bearer header"),
    ("invalid_token", "Earn-app click answers 401 invalid_token",
     "The bearer token belongs to no user (mistyped, or the user's token was changed)",
     "Send the user's current token; internal: check the user's token in config.toml"),
    ("product_not_found", "Earn-app click answers 404 product_not_found",
     "The product id in the click path is not a product in config.toml",
     "Use the product id the app lists; internal: add the product to config.toml"),
    ("invalid_task_url", "Earn-app click answers 400 invalid_task_url",
     "taskUrl is not under the product's task URL (another host, scheme or path)",
     "Send a taskUrl that starts with the product's task URL, or leave it out to use that URL"),
    (UNANSWERED, "A postback in the log with no answer code",
     "Its record has neither a result nor an error: written by an older or interrupted receiver",
     "Internal: read the raw request in the click story (http_status, query, body) and resend it if needed"),
)
FIX_COLUMNS = ("symptom", "likely_cause", "fix")


def fix_guide() -> pl.DataFrame:
    """reason, symptom, likely_cause, fix: what support tells a partner about each issue reason."""
    return pl.DataFrame(list(FIX_GUIDE), schema=["reason", *FIX_COLUMNS], orient="row")


def with_advice(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (with a `reason` column) with the guide's symptom, likely_cause and fix for each row.

    A reason the guide lacks (a code from another receiver version) reads as such rather than as
    an empty cell: support sees that there is no advice, and where to look instead.
    """
    missing = pl.col("fix").is_null()
    return frame.join(fix_guide(), on="reason", how="left").with_columns(
        pl.when(missing).then(pl.concat_str(pl.lit("Answered "), pl.col("reason")))
        .otherwise(pl.col("symptom")).alias("symptom"),
        pl.when(missing).then(pl.lit("A reason the fix guide (pipeline.issues.FIX_GUIDE) does not know"))
        .otherwise(pl.col("likely_cause")).alias("likely_cause"),
        pl.when(missing).then(pl.lit("Read its requests in the click story (query, body, answer) and add "
                                     "the reason to the fix guide"))
        .otherwise(pl.col("fix")).alias("fix"))
