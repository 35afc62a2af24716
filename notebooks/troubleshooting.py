import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="clickledger troubleshooting")

with app.setup:
    import altair as alt
    import marimo as mo
    import polars as pl

    from pipeline.issues import click_id_issue, with_advice
    from pipeline.notebook_support import (
        cli_arg,
        default_data_dir,
        display_money,
        display_times,
        load_or_explain,
        mark_difference,
        pipeline_run_button,
    )
    from pipeline.story import click_story, find_clicks, for_support


@app.cell
def _():
    mo.md("""
    # Troubleshooting postbacks

    Why a partner's postback did not become a conversion, and what to tell them. Everything
    here comes from the receiver's log, where every request is kept, refused ones too; the
    reasons and fixes come from `pipeline` (`postback_issues`, `with_advice`, `click_story`).
    """)
    return


@app.cell
def _():
    data_input = mo.ui.text(value=default_data_dir(), label="Data directory", full_width=True)
    run_button = pipeline_run_button()
    data_input
    return data_input, run_button


@app.cell
def _(data_input, run_button):
    wh, _instead = load_or_explain(data_input.value, run_button)
    mo.stop(wh is None, _instead)
    # lazily: each view below reads only its columns and rows of the issues (a 10M-event log has ~1.4M)
    issues = wh.scan("postback_issues").with_columns(
        pl.coalesce("partner_id", "key_partner_id").fill_null("(unknown)").alias("partner"))
    return issues, wh


@app.cell
def _(issues, wh):
    _counts = issues.select(
        pl.len().alias("all"), click_id_issue().sum().alias("unknown"),
        (pl.col("reason") == "wrong_path").sum().alias("wrong_path")).collect().row(0, named=True)
    _unknown = _counts["unknown"]
    mo.hstack([
        mo.stat(f"{wh.scan('postbacks').select(pl.len()).collect().item():,}", label="Postbacks received",
                bordered=True),
        mo.stat(f"{_counts['all']:,}", label="Postback issues", bordered=True,
                caption="no counting conversion recorded"),
        mo.stat(f"{_unknown:,}", label="Click id missing or unknown", bordered=True),
        mo.stat(f"{_counts['wrong_path']:,}", label="Sent to a wrong URL",
                bordered=True),
    ], widths="equal", gap=1)
    return


@app.cell
def _(wh):
    _who = wh.scan("clicks").select(pl.col("partner_id", "affiliate_id").unique().implode()).collect()
    _partners = sorted(p for p in _who["partner_id"][0].to_list() if p)
    _affiliates = sorted(a for a in _who["affiliate_id"][0].to_list() if a)
    search = mo.ui.text(value=cli_arg("click") or "", label="Click id or transaction id (or part of one)",
                        placeholder="e.g. 3d00b232 or ord_4619107", full_width=True)
    partner = mo.ui.dropdown(["(any)", *_partners], value="(any)", label="Partner")
    affiliate = mo.ui.dropdown(["(any)", *_affiliates], value="(any)", label="Affiliate")
    mo.vstack([mo.md("## The story of one click"), search, mo.hstack([partner, affiliate], justify="start",
                                                                        gap=2)])
    return affiliate, partner, search


@app.cell
def _(affiliate, issues, partner, search, wh):
    _filtered = bool(search.value.strip()) or partner.value != "(any)" or affiliate.value != "(any)"
    if _filtered:
        found = find_clicks(wh, text=search.value, partner=None if partner.value == "(any)" else partner.value,
                            affiliate=None if affiliate.value == "(any)" else affiliate.value)
        _intro = mo.md(f"{found.height} click id(s) match; pick one.")
    else:  # start where support often does: the latest unknown click id that resembles one of ours
        _latest = issues.filter(pl.col("nearest_click_id").is_not_null()).sort("seq").tail(1).collect()
        _start = _latest["click_id"][0] if _latest.height else ""
        found = find_clicks(wh, text=_start, limit=1) if _start else find_clicks(wh, limit=1)
        _intro = mo.md("_Nothing searched yet: showing the latest postback with an unknown click id "
                       "that resembles one of ours._" if _start else "_Nothing searched yet: the latest click._")
    mo.stop(found.is_empty(), mo.callout(
        "No click, conversion or postback matches. Check the id (a part of it is enough), or clear the "
        "partner and affiliate filters.", kind="warn"))
    picker = mo.ui.table(found, selection="single", initial_selection=[0], page_size=5,
                         show_column_summaries=False, label="")
    mo.vstack([_intro, picker])
    return (picker,)


@app.cell
def _(picker, wh):
    _chosen = picker.value["click_id"][0] if picker.value.height else None
    mo.stop(_chosen is None, mo.md("_Pick a click id in the table above._"))
    with mo.status.spinner(title="Reading the log..."):
        story = click_story(wh, _chosen)
    _requests = for_support(story.requests).with_columns(
        pl.concat_str(pl.col("http_status").cast(pl.String),
                      pl.coalesce(pl.col("error"), pl.col("result")).cast(pl.String).fill_null(""),
                      separator=" ").alias("answer"),
    ).select("received_at", "kind", "route", "path", "answer", "query", "body", "method", "transaction_id",
             "status_raw", "remote_addr", "user_agent", "custom_data", "seq")
    _nearest = story.issues["nearest_click_id"].drop_nulls()
    if story.click.height:
        _click = mo.ui.table(display_times(for_support(story.click.select(
            "clicked_at", "source", "slug", "product_id", "offer_id", "partner_id", "affiliate_id", "user_id",
            "ip", "user_agent", "referer", "expires_at", "custom_data"))), selection=None,
            show_column_summaries=False)
    elif _nearest.len():
        _near = wh.scan("clicks").filter(pl.col("click_id") == _nearest[0]).collect()
        _when = (f", clicked {_near['clicked_at'][0]:%Y-%m-%d %H:%M} UTC on offer `{_near['offer_id'][0]}` "
                 f"(partner {_near['partner_id'][0]})") if _near.height else ""
        _click = mo.callout(mo.vstack([
            mo.md(f"**We never issued this click id.** The nearest one we did issue is `{_nearest[0]}`{_when}: "
                  "the partner probably stored or passed it with characters changed or cut. Search it above "
                  "to see its own story."),
            mo.Html(mark_difference(_chosen, _nearest[0])),
        ]), kind="warn")
    else:
        _click = mo.callout(mo.md("**We never issued this click id**, and none of ours resembles it: "
                                  "see what the partner sent below."), kind="warn")
    mo.vstack([
        mo.md(f"### `{_chosen}`"),
        mo.md("**The click**"),
        _click,
        mo.md("**Every request about it, with the answer we gave**: the raw query and body as received "
              "(api keys cut to their first 4 characters), track events included"),
        mo.ui.table(display_times(_requests), selection=None, page_size=10, show_column_summaries=False,
                    wrapped_columns=["query", "body"], column_widths={"received_at": 160, "query": 300, "body": 220}),
        mo.md("**The conversion it produced**"),
        mo.ui.table(display_times(display_money(story.conversions.select(
            "transaction_id", "converted_at", "status", "status_history", "counts", "not_counted_reason",
            "amount", "currency", "amount_base", "affiliate_payout_base", "duplicates", "survey_id",
            "campaign_id"))), selection=None,
            show_column_summaries=False)
        if story.conversions.height else mo.md("_None: no postback for it was recorded._"),
        mo.md("**Its postback issues**"),
        mo.ui.table(display_times(story.issues.select("received_at", "route", "error", "reason", "detail")),
                    selection=None,
                    show_column_summaries=False, wrapped_columns=["detail"])
        if story.issues.height else mo.md("_None._"),
        mo.md("**What we told the publisher, and when**: one delivery per event and endpoint "
              "(`clickledger forward`), each attempt with the answer it got; secrets in URLs cut"),
        mo.ui.table(display_times(story.deliveries.select(
            "step_at", "event", "affiliate", "state", "points", "attempts", "last_http_status", "last_error",
            "delivered_at", "next_attempt_at", "method", "url", "delivery_id")), selection=None,
            show_column_summaries=False, wrapped_columns=["url", "last_error"])
        if story.deliveries.height else mo.md("_Nothing: no publisher endpoint is told about this click's "
                                              "conversions (`[[affiliates.postbacks]]` in config.toml)._"),
        mo.ui.table(display_times(story.attempts.select(
            "started_at", "event", "affiliate", "attempt", "outcome", "http_status", "error", "duration_ms",
            "next_attempt_at", "delivery_id")), selection=None, show_column_summaries=False,
            wrapped_columns=["error"])
        if story.attempts.height else mo.md(""),
    ])
    return (story,)


@app.cell
def _(issues):
    mo.stop(issues.head(1).collect().is_empty(), mo.callout(
        "No postback issues: every postback recorded a counting conversion. Nothing to tell a partner.",
        kind="success"))
    by_reason = (issues.group_by("reason", "partner").agg(pl.len().alias("issues"))
                 .sort(["issues", "reason", "partner"], descending=[True, False, False]).collect())
    _over_time = (issues.group_by(pl.col("received_at").dt.date().alias("day"), "reason")
                  .agg(pl.len().alias("issues")).sort("day", "reason")
                  .with_columns(pl.col("day").dt.strftime("%b %d").alias("label")).collect())
    _chart = alt.Chart(_over_time).mark_bar().encode(
        x=alt.X("label:O", title="day (UTC)", sort=alt.EncodingSortField("day", op="min"),
                axis=alt.Axis(labelAngle=0)),
        y=alt.Y("issues:Q"), color=alt.Color("reason:N", scale=alt.Scale(scheme="tableau20")),
        tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "reason:N", "issues:Q"],
    ).properties(width=760, height=240, title="Postback issues per day, by reason")
    mo.vstack([mo.md("## Issues by reason and partner"), _chart,
               mo.ui.table(by_reason, label="Issues per reason and partner ((unknown): no click and no key "
                           "told us the partner)", page_size=10, selection=None, show_column_summaries=False)])
    return (by_reason,)


@app.cell
def _(issues):
    mo.stop(issues.head(1).collect().is_empty())
    table = with_advice(issues.group_by("reason").agg(pl.len().alias("issues")).collect()).sort(
        ["issues", "reason"], descending=[True, False]).select("reason", "issues", "symptom", "likely_cause", "fix")
    mo.vstack([
        mo.md("## What to tell the partner\n\nPer reason: what the partner sees, the likely cause, and "
              "the fix to send them (the partner guide's troubleshooting table, extended to every reason)."),
        mo.ui.table(table, selection=None, page_size=20, show_column_summaries=False,
                    wrapped_columns=["reason", "symptom", "likely_cause", "fix"],
                    column_widths={"reason": 175, "issues": 60, "symptom": 220, "likely_cause": 240, "fix": 300}),
    ])
    return (table,)


@app.cell
def _(issues):
    mo.stop(issues.head(1).collect().is_empty())
    nearest = issues.filter(pl.col("nearest_click_id").is_not_null()).select(
        "received_at", "partner", "route", "click_id", "nearest_click_id", "reason").sort(
        "received_at", descending=True).collect()
    wrong_path = for_support(issues.filter(pl.col("reason") == "wrong_path").select(
        "received_at", "partner", "method", "path", "click_id").collect()).sort("received_at", descending=True)
    mo.vstack([
        mo.md("## Unknown click ids, and the click id of ours they most resemble"),
        mo.ui.table(display_times(nearest), page_size=8, selection=None, show_column_summaries=False) if nearest.height
        else mo.md("_No unknown click id is close to one of ours._"),
        mo.md("## Postbacks sent to a wrong URL\n\nRequests to a path we do not serve that carried a click "
              "id: the partner's postback URL is wrong (for example `/postback-old` instead of `/api/postback`). "
              "Api keys in a path are cut to their first 4 characters."),
        mo.ui.table(display_times(wrong_path), page_size=8, selection=None, show_column_summaries=False) if wrong_path.height
        else mo.md("_None: every request carrying a click id went to a postback route._"),
    ])
    return nearest, wrong_path


if __name__ == "__main__":
    app.run()
